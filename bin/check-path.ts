#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { CheckError, checkPath } from '../src/diagnostics/path-check';
import { describeReport } from '../src/diagnostics/path-report';
import { checkToken } from '../src/diagnostics/check-token';

const USAGE = `usage: SSE_RELAY_TOKEN=<jwt> npm run check-path -- <relay URL as clients reach it> [--interval ms] [--count n] [--quiet ms|auto] [--json]
       npm run check-path -- <relay URL> --token-file <file, or - to read standard input> [...]

Reads the relay's diagnostic stream (GET /api/diagnostics/ticks) through whatever stands in
between (proxy, CDN, load balancer) and reports whether events arrive one by one or in bursts,
how late, and whether a quiet stream survives past the heartbeat. Exit 0: all good; 1: bursts
or a cut quiet stream; 2: the check could not run. --token <jwt> works too, but shows the
token to whoever sees the command: npm run prints it back.`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      token: { type: 'string' },
      'token-file': { type: 'string' },
      interval: { type: 'string' },
      count: { type: 'string' },
      quiet: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const url = positionals[0];
  const given = values.help || url === undefined ? undefined : await checkToken({ token: values.token, tokenFile: values['token-file'] }, process.env);
  if (url === undefined || given === undefined) {
    console.error(USAGE);
    return 2;
  }
  if (given.warning !== undefined) console.error(`check-path: ${given.warning}`);
  const { token } = given;
  const number = (value: string | undefined): number | undefined => (value === undefined ? undefined : Number(value));
  const report = await checkPath({
    url,
    token,
    interval: number(values.interval),
    count: number(values.count),
    quiet: values.quiet === undefined || values.quiet === 'auto' ? 'auto' : Number(values.quiet),
  });
  console.log(values.json ? JSON.stringify(report) : describeReport(report).join('\n'));
  return report.delivery === 'one by one' && report.quietSurvived !== false && report.ticks === report.expectedTicks ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`check-path: ${err instanceof CheckError || err instanceof Error ? err.message : String(err)}`);
    process.exit(2);
  },
);
