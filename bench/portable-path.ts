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
