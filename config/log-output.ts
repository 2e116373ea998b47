import type { DestinationStream } from 'pino';
import type PinoPretty from 'pino-pretty';

/**
 * Where the relay's log lines go: pretty, coloured lines when a person reads them (stdout is a
 * terminal, not production, and the pino-pretty dev dependency is installed), JSON lines otherwise.
 * Undefined means pino's own stdout writer.
 */
export function logOutput(
  { production, isTTY }: { production: boolean; isTTY: boolean },
  destination: NodeJS.WritableStream = process.stdout,
): DestinationStream | undefined {
  if (production || !isTTY) return undefined;
  let pretty: typeof PinoPretty;
  try {
    // Loaded only here: production installs omit dev dependencies, and then JSON is what they get.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    pretty = require('pino-pretty') as typeof PinoPretty;
  } catch {
    return undefined;
  }
  return pretty({ destination, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: false });
}
