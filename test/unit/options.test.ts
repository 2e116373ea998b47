import { HTTP_SERVER_SETTINGS } from '../../src/http-server';
import { SERVER_SETTINGS, SETTINGS } from '../../config';
import { ConfigError, EnvReader } from '../../config/env';
import { RELAY_SETTINGS, optionWarnings, resolveOptions } from '../../src/options';
import { type IntegerSetting, MAX_TIMER_MS, type Setting, describeValue, optionSource, resolveSettings } from '../../src/setting';

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

test('an upstream budget smaller than one full multiplexed stream is warned about', () => {
  expect(optionWarnings(resolveOptions({ backendUrl, maxUpstreams: 32 }))).toEqual([]);
  expect(optionWarnings(resolveOptions({ backendUrl, maxUpstreams: 16 }))).toEqual([expect.stringMatching(/^maxUpstreams \(16\) is below maxTopicsPerStream \(32\)/)]);
});

describe('resolveSettings, behind the options and the environment alike', () => {
  const table = { waitMs: { kind: 'ms', env: 'WAIT_MS', default: 100, min: 1, max: 1000, doc: 'a wait' } } as const satisfies Record<string, IntegerSetting>;

  test('an unset setting takes the default given for it over the declared one; a set one keeps its value', () => {
    expect(resolveSettings(table, optionSource({}), { waitMs: 500 })).toEqual({ waitMs: 500 });
    expect(resolveSettings(table, optionSource({}), { waitMs: undefined })).toEqual({ waitMs: 100 });
    expect(resolveSettings(table, optionSource({ waitMs: 7 }), { waitMs: 500 })).toEqual({ waitMs: 7 });
    expect(resolveSettings(table, new EnvReader({ WAIT_MS: ' 7 ' }), { waitMs: 500 })).toEqual({ waitMs: 7 });
    expect(resolveSettings(table, new EnvReader({ WAIT_MS: '' }), { waitMs: 500 })).toEqual({ waitMs: 500 });
  });

  test('a given default is not checked against the bounds: the caller derives it (the caps from the open-file limit)', () => {
    expect(resolveSettings(table, optionSource({}), { waitMs: 5000 })).toEqual({ waitMs: 5000 });
  });

  const integers = SETTINGS.filter((setting): setting is IntegerSetting => setting.kind !== 'text');
  test.each(integers.flatMap((s) => [[s.env, s.min - 1], [s.env, s.max + 1], [s.env, s.min + 0.5]]))(
    '%s=%d is refused by the environment and as an option with the same bounds, each naming its own name',
    (env, value) => {
      const setting = integers.find((s) => s.env === env) as IntegerSetting;
      const expected = `an integer from ${setting.min} to ${setting.max}${setting.kind === 'ms' ? ' (milliseconds)' : setting.kind === 'bytes' ? ' (bytes)' : ''}`;
      expect(() => resolveSettings({ option: setting }, optionSource({ option: value }))).toThrow(new TypeError(`option must be ${expected}, got ${value}`));
      expect(() => resolveSettings({ option: setting }, new EnvReader({ [env]: String(value) }))).toThrow(new ConfigError(env, expected, String(value)));
    },
  );
});
