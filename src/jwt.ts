/** Shortest HS256 secret accepted: 256 bits of text, the hash's output size (RFC 7518, section 3.2). */
export const MIN_SECRET_LENGTH = 32;
