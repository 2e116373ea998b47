import { loadConfig } from '../../config';
import { ConfigError } from '../../config/env';
import { RELAY_OPTION_SOURCES, SETTINGS } from '../../config';
import type { IntegerSetting } from '../../src/setting';

const SECRET = 'x'.repeat(40);

test('defaults apply when nothing is set, the secret left to the development secret (no throwaway one made here)', () => {
  const config = loadConfig({});
  expect(config.port).toBe(8080);
  expect(config.backendUrl).toBe('bundled');
  expect(config.jwt.generated).toBe(true);
  expect(config.jwt.secret).toBeUndefined();
  expect(config.relay.heartbeatMs).toBe(15_000);
  expect(config.http.headersTimeoutMs).toBe(10_000);
  expect(config.host).toBeUndefined();
  expect(config.trustProxy).toBe(false);
  expect(config.logLevel).toBe('info');
});

test('good values are read and typed', () => {
  const config = loadConfig({
    PORT: '9000',
    HOST: '127.0.0.1',
    BACKEND_URL: 'http://127.0.0.1:8081',
    JWT_SECRET: SECRET,
    CORS_ORIGINS: 'https://a.example, http://localhost:3000',
    TRUST_PROXY: '1',
    HEARTBEAT_MS: '500',
    RATE_LIMIT_PER_MINUTE: '0',
    REDIS_URL: 'redis://127.0.0.1:6379',
    LOG_LEVEL: 'warn',
    JWT_TOPICS_CLAIM: 'https://app.example/topics',
  });
  expect(config.port).toBe(9000);
  expect(config.host).toBe('127.0.0.1');
  expect(config.backendUrl).toEqual(new URL('http://127.0.0.1:8081/'));
  expect(config.jwt).toMatchObject({ secret: SECRET, generated: false, topicsClaim: 'https://app.example/topics' });
  expect(config.corsOrigins).toEqual(['https://a.example', 'http://localhost:3000']);
  expect(config.trustProxy).toBe(1);
  expect(config.relay.heartbeatMs).toBe(500);
  expect(config.relay.rateLimitPerMinute).toBe(0);
  expect(config.redisUrl?.protocol).toBe('redis:');
  expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_SIGNING_SECRET: SECRET }).redisSigningSecret).toBe(SECRET);
});

test.each([
  ['PORT', 'abc', /PORT: expected an integer from 0 to 65535, got "abc"/],
  ['PORT', '70000', /PORT/],
  ['HEARTBEAT_MS', '-1', /HEARTBEAT_MS: expected an integer from 1/],
  ['HEARTBEAT_MS', '1.5', /HEARTBEAT_MS/],
  ['BACKEND_URL', 'ftp://x', /BACKEND_URL: expected an http/],
  ['BACKEND_URL', 'not a url', /BACKEND_URL/],
  ['JWT_SECRET', 'short', /JWT_SECRET: expected at least 32 characters/],
  ['JWT_PUBLIC_KEY', 'nope', /JWT_PUBLIC_KEY/],
  ['CORS_ORIGINS', 'https://a.example/path', /CORS_ORIGINS/],
  ['TRUST_PROXY', 'true', /TRUST_PROXY/],
  ['TRUST_PROXY', '33', /^TRUST_PROXY: expected an integer from 0 to 32, got "33"$/],
  ['LOG_LEVEL', 'loud', /LOG_LEVEL: expected one of/],
  ['REDIS_URL', 'http://x', /^REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL, got "http:\/\/x"$/],
  ['REDIS_URL', 'not a url', /^REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL, got "not a url"$/],
  ['BACKEND_URL', 'redis://x', /^BACKEND_URL: expected an http:\/\/ or https:\/\/ URL, got "redis:\/\/x"$/],
  ['REDIS_CLUSTER_NODES', '10.0.0.1', /^REDIS_CLUSTER_NODES: expected comma-separated host:port seed nodes of a Redis Cluster, like 10.0.0.1:7000,10.0.0.2:7000, got "10.0.0.1"$/],
  ['REDIS_CLUSTER_NODES', 'a:7000,redis://b:7001', /^REDIS_CLUSTER_NODES: expected comma-separated host:port/],
  ['REDIS_CLUSTER_NODES', 'a:70000', /^REDIS_CLUSTER_NODES: expected comma-separated host:port/],
  ['MAX_CONNECTIONS', '0', /MAX_CONNECTIONS/],
  ['REDIS_SIGNING_SECRET', ` ${'s'.repeat(31)} `, /^REDIS_SIGNING_SECRET: expected at least 32 characters/],
  ['UPSTREAM_REDIRECT_ORIGINS', 'cdn.example.com', /^UPSTREAM_REDIRECT_ORIGINS: expected comma-separated origins like https:\/\/app.example.com, got "cdn.example.com"$/],
  ['UPSTREAM_REDIRECT_ORIGINS', 'https://cdn.example.com/files', /^UPSTREAM_REDIRECT_ORIGINS: expected comma-separated origins/],
  ['BACKEND_HEALTH_PATH', 'health', /^BACKEND_HEALTH_PATH: expected a path of the backend, like \/health, got "health"$/],
  ['BACKEND_HEALTH_PATH', '//other.example/health', /^BACKEND_HEALTH_PATH: expected a path of the backend/],
  ['JWT_COOKIE_NAME', 'my cookie', /^JWT_COOKIE_NAME: expected a cookie name/],
  ['JWT_CLOCK_TOLERANCE_SEC', '301', /^JWT_CLOCK_TOLERANCE_SEC: expected an integer from 0 to 300, got "301"$/],
  ['JWT_TOPICS_CLAIM', 'my topics', /^JWT_TOPICS_CLAIM: expected a claim name of 1-256 printable ASCII characters, without spaces, got "my topics"$/],
])('%s=%s stops the start with a message naming it', (name, value, message) => {
  expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
  expect(() => loadConfig({ [name]: value })).toThrow(message);
});

test('REDIS_CLUSTER_NODES takes host:port seeds (IPv6 in brackets), and not beside REDIS_URL', () => {
  expect(loadConfig({ REDIS_CLUSTER_NODES: 'redis-0:7000, 10.0.0.2:7001,[::1]:7002' }).redisClusterNodes).toEqual(['redis-0:7000', '10.0.0.2:7001', '[::1]:7002']);
  expect(loadConfig({}).redisClusterNodes).toBeUndefined();
  expect(() => loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_CLUSTER_NODES: '127.0.0.1:7000' })).toThrow(
    /^REDIS_CLUSTER_NODES: expected to be unset when REDIS_URL is set \(one Redis or one Redis Cluster\), got "127.0.0.1:7000"$/,
  );
});

test('production refuses to start without a key', () => {
  expect(() => loadConfig({ NODE_ENV: 'production', BACKEND_URL: 'http://127.0.0.1:8081' })).toThrow(/JWT_SECRET/);
  expect(loadConfig({ NODE_ENV: 'production', BACKEND_URL: 'http://127.0.0.1:8081', JWT_SECRET: SECRET }).production).toBe(true);
});

test('production without BACKEND_URL refuses to start, unless the bundled demo backend is asked for', () => {
  const production = { NODE_ENV: 'production', JWT_SECRET: SECRET };
  expect(() => loadConfig(production)).toThrow(/^BACKEND_URL: expected your backend's http\(s\) URL in production \(or bundled, for the demo backend\), got ""$/);
  expect(loadConfig({ ...production, BACKEND_URL: 'bundled' }).backendUrl).toBe('bundled');
  expect(loadConfig({}).backendUrl).toBe('bundled');
});

// The development login hands out tokens: only where they reach nothing but the bundled demo backend.
test.each([
  [undefined, 'bundled', true],
  [undefined, 'http://127.0.0.1:8081', false],
  ['development', 'bundled', true],
  ['development', 'http://127.0.0.1:8081', false],
  ['test', 'bundled', false],
  ['test', 'http://127.0.0.1:8081', false],
])('NODE_ENV=%s, BACKEND_URL=%s, no JWT key: development login %s', (nodeEnv, backendUrl, login) => {
  const config = loadConfig({ ...(nodeEnv === undefined ? {} : { NODE_ENV: nodeEnv }), BACKEND_URL: backendUrl });
  expect(config.jwt.generated).toBe(true);
  expect(config.developmentLogin).toBe(login);
  expect(loadConfig({ ...(nodeEnv === undefined ? {} : { NODE_ENV: nodeEnv }), BACKEND_URL: backendUrl, JWT_SECRET: SECRET }).developmentLogin).toBe(false);
});

test('NODE_ENV=production never has the development login, and without a key does not start', () => {
  for (const backendUrl of ['bundled', 'http://127.0.0.1:8081']) {
    expect(() => loadConfig({ NODE_ENV: 'production', BACKEND_URL: backendUrl })).toThrow(/^JWT_SECRET: expected a secret/);
    expect(loadConfig({ NODE_ENV: 'production', BACKEND_URL: backendUrl, JWT_SECRET: SECRET }).developmentLogin).toBe(false);
  }
});

test('an unknown NODE_ENV (a misspelt production) without a JWT key does not start: it would run on the development secret and print a token', () => {
  for (const nodeEnv of ['prod', 'Production', 'staging']) {
    for (const backendUrl of ['bundled', 'http://127.0.0.1:8081']) {
      expect(() => loadConfig({ NODE_ENV: nodeEnv, BACKEND_URL: backendUrl })).toThrow(
        new ConfigError('JWT_SECRET', `a secret (or JWT_PUBLIC_KEY) unless NODE_ENV is development or test (NODE_ENV=${nodeEnv})`, ''),
      );
      expect(loadConfig({ NODE_ENV: nodeEnv, BACKEND_URL: backendUrl, JWT_SECRET: SECRET }).developmentLogin).toBe(false);
    }
  }
});

test('an unknown NODE_ENV is warned about once, naming it; the known ones and unset are not', () => {
  for (const nodeEnv of ['prod', 'Production', 'staging']) {
    const warnings = loadConfig({ NODE_ENV: nodeEnv, JWT_SECRET: SECRET }).warnings.filter((warning) => warning.includes('NODE_ENV'));
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`^NODE_ENV=${nodeEnv} is none of production, development, test: .*without the development login`))]);
  }
  for (const env of [{}, { NODE_ENV: 'development' }, { NODE_ENV: 'test' }, { NODE_ENV: 'production', JWT_SECRET: SECRET, BACKEND_URL: 'bundled' }]) {
    expect(loadConfig(env).warnings.filter((warning) => warning.includes('NODE_ENV'))).toEqual([]);
  }
});

test.each(['JWT_SECRET', 'JWT_PUBLIC_KEY'])('a blank %s stops the start instead of falling back to the development secret', (name) => {
  for (const blank of ['', '   ', '\t\n']) {
    expect(() => loadConfig({ [name]: blank })).toThrow(new ConfigError(name, `a key, or no ${name} at all for the development secret`, blank));
  }
});

test('HOST takes an address or a host name', () => {
  expect(loadConfig({ HOST: '::1' }).host).toBe('::1');
  expect(loadConfig({ HOST: 'localhost' }).host).toBe('localhost');
  expect(() => loadConfig({ HOST: 'http://x' })).toThrow(/^HOST: expected an IP address or a host name/);
});

describe('the admin listener', () => {
  const key = 'k'.repeat(32);

  test('is off without ADMIN_API_KEY, and on with one: 127.0.0.1:9091 unless ADMIN_HOST and ADMIN_PORT say otherwise', () => {
    expect(loadConfig({ ADMIN_PORT: '9999' }).admin).toBeUndefined();
    expect(loadConfig({ ADMIN_API_KEY: key }).admin).toEqual({ apiKey: key, port: 9091, host: '127.0.0.1' });
    expect(loadConfig({ ADMIN_API_KEY: key, ADMIN_PORT: '0', ADMIN_HOST: '10.0.0.5' }).admin).toEqual({ apiKey: key, port: 0, host: '10.0.0.5' });
  });

  test('a key shorter than 32 characters stops the start, naming its length and never the key', () => {
    let error: unknown;
    try {
      loadConfig({ ADMIN_API_KEY: 'short-admin-key' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe('ADMIN_API_KEY: expected at least 32 characters, got "(15 characters)"');
  });

  test('ADMIN_PORT may not be PORT, and ADMIN_HOST must be an address or a host name', () => {
    expect(() => loadConfig({ ADMIN_API_KEY: key, PORT: '8080', ADMIN_PORT: '8080' })).toThrow(
      'ADMIN_PORT: expected a port other than PORT (the admin API never shares the public port), got "8080"',
    );
    expect(() => loadConfig({ ADMIN_API_KEY: key, ADMIN_HOST: 'http://x' })).toThrow(/^ADMIN_HOST: expected an IP address or a host name/);
  });
});

const integerSettings = SETTINGS.filter((setting): setting is IntegerSetting => setting.kind !== 'text');

test.each(integerSettings.flatMap((s) => [
  [s.env, String(s.min - 1)],
  [s.env, String(s.max + 1)],
  [s.env, '1.5'],
  [s.env, '10ms'],
]))('%s=%s stops the start with a message naming the variable and its bounds', (name, value) => {
  const setting = integerSettings.find((s) => s.env === name) as IntegerSetting;
  expect(() => loadConfig({ [name]: value })).toThrow(new ConfigError(name, `an integer from ${setting.min} to ${setting.max}${setting.kind === 'ms' ? ' (milliseconds)' : setting.kind === 'bytes' ? ' (bytes)' : ''}`, value));
});

test('every integer variable is read at its bounds', () => {
  for (const setting of integerSettings) {
    for (const value of [setting.min, setting.max]) {
      const config = loadConfig({ ADMIN_API_KEY: 'k'.repeat(32), [setting.env]: String(value) });
      const read = {
        port: config.port,
        shutdownTimeoutMs: config.shutdownTimeoutMs,
        drainWindowMs: config.drainWindowMs,
        jwtClockToleranceSec: config.jwt.clockToleranceSec,
        adminPort: config.admin?.port,
        ...config.relay,
        ...config.http,
      };
      expect(Object.values(read)).toContain(value);
    }
  }
});

describe('socket and stream caps', () => {
  test('default from the open-file limit: a third for clients, a third for proxied requests (90% of the clients, for streams too), a third for topic upstreams', () => {
    const config = loadConfig({}, () => 20_000);
    expect(config.http.maxSockets).toBe(6581);
    expect(config.relay.maxConnections).toBe(6581 - 658);
    expect(config.relay.maxUpstreams).toBe(6581);
    expect(config.warnings).toEqual([]);
  });

  test('without a known limit: MAX_CONNECTIONS 20000 and room for its 503s above it', () => {
    const config = loadConfig({}, () => undefined);
    expect(config.relay.maxConnections).toBe(20_000);
    expect(config.relay.maxUpstreams).toBe(20_000);
    expect(config.http.maxSockets).toBeGreaterThan(20_000);
  });

  test('an explicit MAX_CONNECTIONS lifts the socket cap above it, with a warning when files may run out', () => {
    const config = loadConfig({ MAX_CONNECTIONS: '15000' }, () => 20_000);
    expect(config.relay.maxConnections).toBe(15_000);
    expect(config.http.maxSockets).toBe(16_500);
    expect(config.warnings).toEqual([
      expect.stringMatching(/^MAX_SOCKETS \(16500\) clients, MAX_CONNECTIONS \(15000\) proxied requests and MAX_UPSTREAMS \(6581\) topic upstreams need up to 38337 open files, over this process's limit \(20000\)/),
    ]);
  });

  test('an explicit MAX_UPSTREAMS past what the open files allow is warned about', () => {
    expect(loadConfig({ MAX_UPSTREAMS: '6581' }, () => 20_000).warnings).toEqual([]);
    expect(loadConfig({ MAX_UPSTREAMS: '100000' }, () => 20_000).warnings).toEqual([expect.stringMatching(/MAX_UPSTREAMS \(100000\) topic upstreams need up to/)]);
  });

  test('MAX_SOCKETS at or under MAX_CONNECTIONS is warned about', () => {
    const config = loadConfig({ MAX_CONNECTIONS: '500', MAX_SOCKETS: '500' }, () => 20_000);
    expect(config.warnings).toEqual([expect.stringMatching(/^MAX_CONNECTIONS \(500\) is not below MAX_SOCKETS \(500\)/)]);
  });
});

test('a drain window longer than the whole stop is warned about, since the stop cuts it short', () => {
  expect(loadConfig({ DRAIN_WINDOW_MS: '40000', SHUTDOWN_TIMEOUT_MS: '1000' }, () => 20_000).warnings).toEqual([
    'DRAIN_WINDOW_MS (40000) is over SHUTDOWN_TIMEOUT_MS (1000): a stop ends every stream within the latter, so their reconnects spread over 1000 ms only',
  ]);
  expect(loadConfig({ DRAIN_WINDOW_MS: '1000', SHUTDOWN_TIMEOUT_MS: '1000' }, () => 20_000).warnings).toEqual([]);
  expect(loadConfig({ DRAIN_WINDOW_MS: '5000' }, () => 20_000).warnings).toEqual([]);
});

test('the createRelay options an operator may need have variables: redirect origins, health path, clock tolerance, cookie name', () => {
  const config = loadConfig({
    UPSTREAM_REDIRECT_ORIGINS: 'https://cdn.example.com, http://127.0.0.1:9000',
    BACKEND_HEALTH_PATH: '/status/live',
    JWT_CLOCK_TOLERANCE_SEC: '60',
    JWT_COOKIE_NAME: '__Host-session',
  });
  expect(config.upstreamRedirectOrigins).toEqual(['https://cdn.example.com', 'http://127.0.0.1:9000']);
  expect(config.backendHealthPath).toBe('/status/live');
  expect(config.jwt).toMatchObject({ clockToleranceSec: 60, cookieName: '__Host-session' });
  expect(loadConfig({})).toMatchObject({ upstreamRedirectOrigins: [], backendHealthPath: undefined, jwt: { clockToleranceSec: 5, cookieName: undefined } });
});

test('every createRelay option is set by a declared variable, or says why the server sets none', () => {
  const declared = new Set(SETTINGS.map((setting) => setting.env));
  for (const [option, source] of Object.entries(RELAY_OPTION_SOURCES)) {
    if ('env' in source) expect([option, declared.has(source.env)]).toEqual([option, true]);
    else expect([option, source.why]).toEqual([option, expect.stringMatching(/\w+ \w+/)]);
  }
});
