import { readFile } from 'node:fs/promises';

/** The token `check-path` runs with, and a warning to print when it came from where others can read it. */
export interface CheckToken {
  readonly token: string;
  readonly warning?: string;
}

/** Thrown when the token cannot be read as asked; the message says what to give instead. */
class TokenError extends Error {}

/**
 * The token for `check-path`, from `--token-file` (a file, or `-` for standard input), from
 * `--token`, or from `SSE_RELAY_TOKEN`; undefined when none was given. A token on the command
 * line is printed back by `npm run` (its banner repeats the arguments) and kept in shell history
 * and the process list: it still works, with a warning that says what to use instead.
 */
export async function checkToken(
  args: { readonly token?: string | undefined; readonly tokenFile?: string | undefined },
  env: Readonly<Record<string, string | undefined>>,
  stdin: AsyncIterable<Buffer | string> = process.stdin,
): Promise<CheckToken | undefined> {
  if (args.token !== undefined && args.tokenFile !== undefined) throw new TokenError('give --token or --token-file, not both');
  if (args.tokenFile !== undefined) {
    const text = args.tokenFile === '-' ? await readAll(stdin) : await readFile(args.tokenFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new TokenError(`cannot read the token file ${args.tokenFile}: ${err.code ?? err.message}`);
    });
    const token = text.trim();
    if (token === '') throw new TokenError(`the token file ${args.tokenFile === '-' ? '(standard input)' : args.tokenFile} is empty`);
    return { token };
  }
  if (args.token !== undefined) {
    return {
      token: args.token,
      warning: '--token shows the token to whoever sees the command (npm run prints it back, shell history and ps keep it): prefer SSE_RELAY_TOKEN or --token-file',
    };
  }
  const fromEnv = env.SSE_RELAY_TOKEN?.trim();
  return fromEnv === undefined || fromEnv === '' ? undefined : { token: fromEnv };
}

async function readAll(input: AsyncIterable<Buffer | string>): Promise<string> {
  let text = '';
  for await (const chunk of input) text += chunk.toString();
  return text;
}
