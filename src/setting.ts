/** What an integer setting counts; decides how its bounds and default read in the docs. */
export type IntegerKind = 'ms' | 'bytes' | 'count' | 'port';

/**
 * One integer setting, declared once: the library option (the key it is declared under),
 * its environment variable, default, bounds and doc line. Option validation, the
 * environment reader and the table in docs/configuration.md are all derived from it.
 */
export interface IntegerSetting {
  readonly kind: IntegerKind;
  /** The environment variable the standalone server reads it from. */
  readonly env: string;
  readonly default: number;
  readonly min: number;
  readonly max: number;
  /** One line: what it does (the docs add the default and bounds). */
  readonly doc: string;
  /** The default as the docs should state it, when the server derives it (e.g. from the open-file limit). */
  readonly defaultNote?: string;
}

/** A setting the server parses itself (a URL, a key, a list): declared for the docs, read by its own code. */
interface TextSetting {
  readonly kind: 'text';
  readonly env: string;
  /** The default as the docs state it. */
  readonly defaultNote: string;
  readonly doc: string;
}

export type Setting = IntegerSetting | TextSetting;

/**
 * Node turns a timer longer than this into a 1 ms timer (TimeoutOverflowWarning), so no
 * duration may go past it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/**
 * Where integer settings are read from: library options, or the environment
 * (`EnvReader`). Each source says what was set and how a bad value is reported.
 */
export interface SettingSource {
  /** The value set for the setting declared as `name`, or undefined when unset. */
  given(name: string, setting: IntegerSetting): number | undefined;
  /** The error for a value `given` returned that is not `expected` (e.g. "an integer from 1 to 600000 (milliseconds)"). */
  refusal(name: string, setting: IntegerSetting, expected: string, value: number): Error;
}

/**
 * Every setting of `table` from `source`: an unset one takes `defaults[name]` when that is
 * defined, else its declared default; a set one must lie within its bounds, else the source's
 * refusal is thrown. The one place where defaults and bounds are applied.
 */
export function resolveSettings<T extends Record<string, IntegerSetting>>(
  table: T,
  source: SettingSource,
  defaults: { readonly [K in keyof T]?: number | undefined } = {},
): { [K in keyof T]: number } {
  const values: Record<string, number> = {};
  for (const [name, setting] of Object.entries(table)) {
    const value = source.given(name, setting);
    if (value === undefined) {
      values[name] = defaults[name] ?? setting.default;
      continue;
    }
    if (!Number.isSafeInteger(value) || value < setting.min || value > setting.max) {
      throw source.refusal(name, setting, `an integer from ${setting.min} to ${setting.max}${unitSuffix(setting.kind)}`, value);
    }
    values[name] = value;
  }
  return values as { [K in keyof T]: number };
}

/**
 * Library options as a `SettingSource`: `undefined` is unset, and a bad value is a `TypeError`
 * naming the option, its bounds and the value.
 */
export function optionSource(options: Readonly<Record<string, unknown>>): SettingSource {
  return {
    given: (name) => options[name] as number | undefined,
    refusal: (name, _setting, expected, value) => new TypeError(`${name} must be ${expected}, got ${String(value)}`),
  };
}

function unitSuffix(kind: IntegerKind): string {
  if (kind === 'ms') return ' (milliseconds)';
  if (kind === 'bytes') return ' (bytes)';
  return '';
}

/** A value as people read it: `15000` → `15000 (15 s)`, `1048576` → `1048576 (1 MiB)`. */
export function describeValue(kind: IntegerKind, value: number): string {
  const readable = kind === 'ms' ? readableMs(value) : kind === 'bytes' ? readableBytes(value) : undefined;
  return readable === undefined ? String(value) : `${value} (${readable})`;
}

function readableMs(ms: number): string | undefined {
  const units: [number, string][] = [
    [DAY, 'd'],
    [HOUR, 'h'],
    [MINUTE, 'min'],
    [SECOND, 's'],
  ];
  for (const [size, name] of units) if (ms >= size && ms % size === 0) return `${ms / size} ${name}`;
  return ms >= SECOND ? `${ms / SECOND} s` : undefined;
}

function readableBytes(bytes: number): string | undefined {
  const units: [number, string][] = [
    [1024 ** 3, 'GiB'],
    [1024 ** 2, 'MiB'],
    [1024, 'KiB'],
  ];
  for (const [size, name] of units) if (bytes >= size && bytes % size === 0) return `${bytes / size} ${name}`;
  return undefined;
}
