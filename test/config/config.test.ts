import { loadConfig } from '../../config';
import { ConfigError } from '../../config/env';

const SECRET = 'x'.repeat(40);

test('defaults apply when nothing is set, with a generated development secret', () => {
  const config = loadConfig({});
  expect(config.port).toBe(8080);
  expect(config.backendUrl).toBeUndefined();
  expect(config.jwt.generated).toBe(true);
  expect(config.jwt.secret?.length).toBeGreaterThanOrEqual(32);
  expect(config.heartbeatMs).toBe(15_000);
  expect(config.trustProxy).toBe(false);
  expect(config.logLevel).toBe('info');
});

test('good values are read and typed', () => {
  const config = loadConfig({
    PORT: '9000',
    BACKEND_URL: 'http://127.0.0.1:8081',
    JWT_SECRET: SECRET,
    CORS_ORIGINS: 'https://a.example, http://localhost:3000',
    TRUST_PROXY: '1',
    HEARTBEAT_MS: '500',
    RATE_LIMIT_PER_MINUTE: '0',
    REDIS_URL: 'redis://127.0.0.1:6379',
    LOG_LEVEL: 'warn',
  });
  expect(config.port).toBe(9000);
  expect(config.backendUrl?.href).toBe('http://127.0.0.1:8081/');
  expect(config.jwt).toMatchObject({ secret: SECRET, generated: false });
  expect(config.corsOrigins).toEqual(['https://a.example', 'http://localhost:3000']);
  expect(config.trustProxy).toBe(1);
  expect(config.heartbeatMs).toBe(500);
  expect(config.rateLimitPerMinute).toBe(0);
  expect(config.redisUrl?.protocol).toBe('redis:');
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
  ['LOG_LEVEL', 'loud', /LOG_LEVEL: expected one of/],
  ['REDIS_URL', 'http://x', /REDIS_URL/],
  ['MAX_CONNECTIONS', '0', /MAX_CONNECTIONS/],
])('%s=%s stops the start with a message naming it', (name, value, message) => {
  expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
  expect(() => loadConfig({ [name]: value })).toThrow(message);
});

test('production refuses to start without a key', () => {
  expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/JWT_SECRET/);
  expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET }).production).toBe(true);
});
