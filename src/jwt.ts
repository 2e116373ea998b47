/** Shortest HS256 secret accepted: 256 bits of text, the hash's output size (RFC 7518, section 3.2). */
export const MIN_SECRET_LENGTH = 32;

/** A claim name: printable ASCII, as in a URI (RFC 7519 §4.2 allows collision-resistant names like `https://example.com/topics`). */
export const CLAIM_NAME = /^[\x21-\x7e]{1,256}$/;
