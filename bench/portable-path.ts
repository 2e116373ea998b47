import { basename, isAbsolute, relative } from 'node:path';

/**
 * A path as a committed report may show it: relative to `root` (the repository) inside it,
 * else its file name alone, so no report records the layout of the machine it ran on.
 */
export function portable(path: string, root: string): string {
  if (!isAbsolute(path)) return path;
  const inside = relative(root, path);
  return inside.startsWith('..') ? basename(path) : inside;
}

/** A command-line argument with an absolute path in it (`/x/y`, `--out=/x/y`) made `portable`. */
export function portableArg(arg: string, root: string): string {
  const [, flag = '', path] = /^(--[\w-]+=)?(\/.*)$/.exec(arg) ?? [];
  return path === undefined ? arg : `${flag}${portable(path, root)}`;
}

/**
 * Command-line arguments as a report may show them: each `portableArg`, and the value of each
 * option in `shownAs` (`--before`, say, some other checkout of this machine) replaced by what to
 * show instead, given as its own argument or after `=`.
 */
export function portableArgs(argv: readonly string[], root: string, shownAs: Readonly<Record<string, string>> = {}): string[] {
  const shown: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [flag = arg, value] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg];
    const instead = Object.hasOwn(shownAs, flag) ? shownAs[flag] : undefined;
    if (instead === undefined) {
      shown.push(portableArg(arg, root));
    } else if (value !== undefined) {
      shown.push(`${flag}=${instead}`);
    } else {
      shown.push(flag);
      if (i + 1 < argv.length) {
        shown.push(instead);
        i++;
      }
    }
  }
  return shown;
}
