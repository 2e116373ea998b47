import { type IntegerSetting, integerProblem } from '../src/setting';

/** A configuration value that cannot be used; the message names the variable and what it expects. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    expected: string,
    got: string,
  ) {
    super(`${variable}: expected ${expected}, got ${JSON.stringify(got)}`);
    this.name = 'ConfigError';
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

/** Reads the environment's named values, treating empty strings as unset. */
export class EnvReader {
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  /** An integer within [min, max]. */
  int(name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new ConfigError(name, `an integer from ${min} to ${max}`, value);
    }
    return n;
  }

  /** An integer setting from its variable, within its declared bounds; `fallback` when unset. */
  integer(setting: IntegerSetting, fallback = setting.default): number {
    const value = this.raw(setting.env);
    if (value === undefined) return fallback;
    const problem = integerProblem(setting, /^-?\d+$/.test(value) ? Number(value) : Number.NaN);
    if (problem !== undefined) throw new ConfigError(setting.env, problem, value);
    return Number(value);
  }

  /** Every setting of a table, read from its variable. */
  integers<T extends Record<string, IntegerSetting>>(table: T): { [K in keyof T]: number } {
    const values: Record<string, number> = {};
    for (const [name, setting] of Object.entries(table)) values[name] = this.integer(setting);
    return values as { [K in keyof T]: number };
  }

  oneOf<T extends string>(name: string, choices: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!(choices as readonly string[]).includes(value)) throw new ConfigError(name, `one of ${choices.join(', ')}`, value);
    return value as T;
  }

  url(name: string): URL | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    try {
      const url = new URL(value);
      if (url.protocol === 'http:' || url.protocol === 'https:') return url;
    } catch {
      // reported below
    }
    throw new ConfigError(name, 'an http:// or https:// URL', value);
  }

  list(name: string): string[] {
    return (this.raw(name) ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
  }
}
