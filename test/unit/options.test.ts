import { HTTP_SERVER_SETTINGS } from '../../routes/http-server';
import { SERVER_SETTINGS } from '../../config';
import { RELAY_SETTINGS, optionWarnings, resolveOptions } from '../../src/options';
import { MAX_TIMER_MS, type Setting, describeValue } from '../../src/setting';

const backendUrl = 'http://127.0.0.1:1';

test('unset and undefined options get the declared defaults', () => {
  const config = resolveOptions({ backendUrl, heartbeatMs: undefined });
  for (const [name, setting] of Object.entries(RELAY_SETTINGS)) expect(config[name as keyof typeof RELAY_SETTINGS]).toBe(setting.default);
  expect(config.backendUrl.href).toBe('http://127.0.0.1:1/');
  expect(Object.isFrozen(config)).toBe(true);
});

test.each(Object.entries(RELAY_SETTINGS).flatMap(([name, s]) => [
  [name, s.min - 1],
  [name, s.max + 1],
  [name, s.min + 0.5],
  [name, Number.NaN],
]))('%s: %d is refused with a TypeError naming the option and its bounds', (name, value) => {
  expect(() => resolveOptions({ backendUrl, [name]: value })).toThrow(TypeError);
  expect(() => resolveOptions({ backendUrl, [name]: value })).toThrow(new RegExp(`^${name} must be an integer from -?\\d+ to \\d+`));
});

test('each option is accepted at its bounds', () => {
  for (const [name, s] of Object.entries(RELAY_SETTINGS)) {
    expect(resolveOptions({ backendUrl, [name]: s.min })[name as keyof typeof RELAY_SETTINGS]).toBe(s.min);
    expect(resolveOptions({ backendUrl, [name]: s.max })[name as keyof typeof RELAY_SETTINGS]).toBe(s.max);
  }
});

test('a heartbeat of 2^31 ms (a 1 ms timer in Node) is refused', () => {
  expect(() => resolveOptions({ backendUrl, heartbeatMs: 2 ** 31 })).toThrow('heartbeatMs must be an integer from 1 to 600000 (milliseconds), got 2147483648');
});

test('every duration fits in a Node timer, and every default lies within its bounds', () => {
  const all: Setting[] = [...Object.values(RELAY_SETTINGS), ...Object.values(HTTP_SERVER_SETTINGS), ...Object.values(SERVER_SETTINGS)];
  for (const setting of all) {
    if (setting.kind === 'text') continue;
    if (setting.kind === 'ms') expect([setting.env, setting.max <= MAX_TIMER_MS]).toEqual([setting.env, true]);
    expect([setting.env, setting.min <= setting.default && setting.default <= setting.max]).toEqual([setting.env, true]);
  }
  expect(new Set(all.map((setting) => setting.env)).size).toBe(all.length);
});

test('backendUrl must be http or https', () => {
  expect(() => resolveOptions({ backendUrl: 'ftp://x' })).toThrow('backendUrl must be http or https, got ftp:');
});

test('values read as people say them', () => {
  expect(describeValue('ms', 15_000)).toBe('15000 (15 s)');
  expect(describeValue('ms', 3_600_000)).toBe('3600000 (1 h)');
  expect(describeValue('ms', 250)).toBe('250');
  expect(describeValue('bytes', 1024 ** 2)).toBe('1048576 (1 MiB)');
  expect(describeValue('count', 1000)).toBe('1000');
});

test('combinations that work but were probably not meant are warned about, the defaults none', () => {
  expect(optionWarnings(resolveOptions({ backendUrl }))).toEqual([]);
  const warnings = optionWarnings(resolveOptions({ backendUrl, reconnectBaseDelayMs: 5000, reconnectMaxDelayMs: 1000, heartbeatMs: 60_000, idleTimeoutMs: 30_000, clientMaxBufferedBytes: 1024 }));
  expect(warnings).toEqual([
    expect.stringMatching(/^reconnectMaxDelayMs \(1000\) is below reconnectBaseDelayMs \(5000\)/),
    expect.stringMatching(/^idleTimeoutMs \(30000\) is below heartbeatMs \(60000\)/),
    expect.stringMatching(/^clientMaxBufferedBytes \(1024\) is below maxEventBytes \(1048576\)/),
  ]);
});
