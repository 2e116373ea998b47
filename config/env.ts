import { type IntegerSetting, type SettingSource, resolveSettings } from '../src/setting';

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
export class EnvReader implements SettingSource {
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  /** The value of a variable that is set but empty or only whitespace; undefined otherwise. */
  blank(name: string): string | undefined {
    const value = this.env[name];
    return value !== undefined && value.trim() === '' ? value : undefined;
  }

    string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  /** An integer within [min, max], checked as a declared setting's would be. */
  int(name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    return resolveSettings({ [name]: { kind: 'count', env: name, default: fallback, min, max, doc: '' } }, this)[name] as number;
  }

  /** A setting's variable as a number (NaN when it is not an integer); for `resolveSettings`. */
  given(_name: string, setting: IntegerSetting): number | undefined {
    const value = this.raw(setting.env);
    return value === undefined ? undefined : integerOf(value);
  }

  /** A `ConfigError` naming the setting's variable and quoting it as it was written. */
  refusal(_name: string, setting: IntegerSetting, expected: string, value: number): ConfigError {
    return new ConfigError(setting.env, expected, this.raw(setting.env) ?? String(value));
  }

  oneOf<T extends string>(name: string, choices: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!(choices as readonly string[]).includes(value)) throw new ConfigError(name, `one of ${choices.join(', ')}`, value);
    return value as T;
  }

  /** A URL with one of `protocols`; `expected` says which, in the error. */
  url(name: string, protocols: readonly string[] = ['http:', 'https:'], expected = 'an http:// or https:// URL'): URL | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    try {
      const url = new URL(value);
      if (protocols.includes(url.protocol)) return url;
    } catch {
      // reported below
    }
    throw new ConfigError(name, expected, value);
  }

  list(name: string): string[] {
    return (this.raw(name) ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
  }
}

/** Digits with an optional minus as their number; anything else (`1.5`, `10ms`, `1e3`) is NaN. */
function integerOf(value: string): number {
  return /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
}
