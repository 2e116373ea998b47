#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { CheckError, checkPath } from '../src/diagnostics/path-check';
import { describeReport } from '../src/diagnostics/path-report';

const USAGE = `usage: npm run check-path -- <relay URL as clients reach it> --token <jwt> [--interval ms] [--count n] [--quiet ms|auto] [--json]

Reads the relay's diagnostic stream (GET /api/diagnostics/ticks) through whatever stands in
between (proxy, CDN, load balancer) and reports whether events arrive one by one or in bursts,
how late, and whether a quiet stream survives past the heartbeat. Exit 0: all good; 1: bursts
or a cut quiet stream; 2: the check could not run. The token may also come from SSE_RELAY_TOKEN.`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      token: { type: 'string' },
      interval: { type: 'string' },
      count: { type: 'string' },
      quiet: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const token = values.token ?? process.env.SSE_RELAY_TOKEN;
  const url = positionals[0];
  if (values.help || url === undefined || token === undefined) {
    console.error(USAGE);
    return 2;
  }
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
