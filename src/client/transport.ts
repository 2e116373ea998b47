/** Where the relay is and who the caller is: the token when one is given, the cookie otherwise. */
export interface TransportOptions {
  /** The relay's origin and path prefix, without a trailing slash; '' for the page's own origin. Defaults to ''. */
  baseUrl?: string;
  /** A token, or a function returning one (called before each request, so a refreshed token is used). Unset: the `access_token` cookie is sent. */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /** The fetch to use. Defaults to the global `fetch`. */
  fetch?: typeof fetch;
}

/** Sends requests to the relay with the caller's credentials. */
export class Transport {
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: TransportOptions) {
    this.baseUrl = (options.baseUrl ?? '').replace(/\/+$/, '');
    const impl = options.fetch ?? globalThis.fetch;
    if (typeof impl !== 'function') throw new TypeError('no fetch: pass options.fetch');
    // Called as a method of globalThis: browsers throw "Illegal invocation" on a detached fetch.
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** The absolute or root-relative URL of a relay path. */
  url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  /**
   * `fetch` of a relay path with the Authorization header when there is a token, or the cookie.
   * `sending` is called as the request goes out, once the token is known.
   */
  async request(path: string, init: RequestInit = {}, sending?: () => void): Promise<Response> {
    const headers = new Headers(init.headers);
    const token = typeof this.options.token === 'function' ? await this.options.token() : this.options.token;
    if (token) headers.set('Authorization', `Bearer ${token}`);
    sending?.();
    return this.fetchImpl(this.url(path), { ...init, headers, credentials: token ? 'same-origin' : 'include' });
  }

  /**
   * Who the requests speak for, to name what the tabs share: `cookie` (every tab of an origin
   * sends the same one), or the token's `sub` read without verifying it (the relay verifies;
   * this only keeps two users' tabs apart). Undefined when the token is not a readable JWT.
   */
  async credentialKey(): Promise<string | undefined> {
    if (this.options.token === undefined) return 'cookie';
    const token = typeof this.options.token === 'function' ? await this.options.token() : this.options.token;
    const payload = token?.split('.')[1];
    if (payload === undefined) return undefined;
    try {
      const bytes = Uint8Array.from(atob(payload.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown };
      return typeof claims.sub === 'string' ? `sub ${claims.sub}` : undefined;
    } catch {
      return undefined;
    }
  }

  /** A JSON request; resolves with the parsed answer, rejects with `RelayError` on a non-2xx. */
  async json<T>(path: string, body?: unknown, init: RequestInit = {}): Promise<T> {
    const response = await this.request(path, {
      ...init,
      ...(body === undefined ? {} : { method: init.method ?? 'POST', body: JSON.stringify(body) }),
      headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    });
    if (!response.ok) throw await RelayError.from(response);
    return (await response.json()) as T;
  }
}

/** A non-2xx answer of the relay, with its JSON error code when it had one. */
export class RelayError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'RelayError';
  }

  /** Reads the `{"error":{"code","message"}}` body of a failed answer (or its status when the body is something else). */
  static async from(response: Response): Promise<RelayError> {
    let code: string | undefined;
    let message = `HTTP ${response.status}`;
    try {
      const body = (await response.json()) as { error?: { code?: string; message?: string } };
      code = body.error?.code;
      if (body.error?.message) message = `${message}: ${body.error.message}`;
    } catch {
      // not JSON (a proxy's HTML page): the status says enough
    }
    return new RelayError(response.status, code, message);
  }
}

/** What went wrong, in words: an error's message, or the thrown value as it prints. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
