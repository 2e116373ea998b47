/**
 * A small SVG line chart writer for the bench results: linear axes, one polyline per series
 * (with an optional min-max band around it), a legend; and the fan-out chart, drawn from a
 * run's rows or from results JSON files:
 *
 *   node dist/bench/chart.js bench/results/after.json [--before bench/results/before.json] [--out chart.svg] [--subjects floor,relay,nginx,direct]
 *
 * Each subject's p99 is a line through the median of its runs with a band from the fastest to
 * the slowest run; with `--before`, the earlier results are drawn dashed and paler, named "before".
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { FanoutRow } from './fanout-row';
import type { SubjectName } from './lab';

export interface Series {
  readonly name: string;
  /** [x, y] pairs; points with a non-finite y are left out. */
  readonly points: readonly (readonly [number, number])[];
  readonly color: string;
  readonly dashed: boolean;
  /** [x, low, high]: a translucent band in the series' colour (the spread over runs). */
  readonly band?: readonly (readonly [number, number, number])[];
  readonly opacity?: number;
}

export interface ChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
}

const WIDTH = 760;
const HEIGHT = 420;
const MARGIN = { left: 70, right: 210, top: 40, bottom: 55 };

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Round tick steps (1, 2, 5 × 10^n) giving about `count` ticks over [0, max]. */
function ticks(max: number, count: number): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw) as number;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  if ((out[out.length - 1] ?? 0) < max) out.push(Number(((out[out.length - 1] ?? 0) + step).toPrecision(12)));
  return out;
}

function label(value: number): string {
  return Math.abs(value) >= 1000 ? `${Number((value / 1000).toPrecision(3))}k` : String(Number(value.toPrecision(3)));
}

/** The chart as a standalone SVG document. Both axes start at 0. */
export function lineChart(spec: ChartSpec): string {
  const points = spec.series.flatMap((s) => [
    ...s.points.filter(([, y]) => Number.isFinite(y)),
    ...(s.band ?? []).filter(([, , high]) => Number.isFinite(high)).map(([x, , high]) => [x, high] as const),
  ]);
  const xTicks = ticks(Math.max(1, ...points.map(([x]) => x)), 6);
  const yTicks = ticks(Math.max(1e-9, ...points.map(([, y]) => y)), 6);
  const xMax = xTicks[xTicks.length - 1] ?? 1;
  const yMax = yTicks[yTicks.length - 1] ?? 1;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x: number): number => MARGIN.left + (x / xMax) * plotW;
  const sy = (y: number): number => MARGIN.top + plotH - (y / yMax) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15">${escape(spec.title)}</text>`,
  ];
  for (const y of yTicks) {
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${sy(y).toFixed(1)}" y2="${sy(y).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${(sy(y) + 4).toFixed(1)}" text-anchor="end">${label(y)}</text>`);
  }
  for (const x of xTicks) {
    out.push(`<line x1="${sx(x).toFixed(1)}" x2="${sx(x).toFixed(1)}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${sx(x).toFixed(1)}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${label(x)}</text>`);
  }
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 12}" text-anchor="middle">${escape(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escape(spec.yLabel)}</text>`);
  // Bands first, so that every line stays visible on top of them.
  for (const series of spec.series) {
    const band = (series.band ?? []).filter(([, low, high]) => Number.isFinite(low) && Number.isFinite(high));
    if (band.length === 0) continue;
    const edge = [...band.map(([x, , high]) => [x, high] as const), ...[...band].reverse().map(([x, low]) => [x, low] as const)];
    // One point wide: a short bar, like an error bar.
    const points = band.length === 1 ? edge.flatMap(([x, y]) => [[x, y, -4], [x, y, 4]] as const).map(([x, y, dx]) => `${(sx(x) + dx).toFixed(1)},${sy(y).toFixed(1)}`) : edge.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    out.push(`<polygon points="${points.join(' ')}" fill="${series.color}" fill-opacity="${0.15 * (series.opacity ?? 1)}" stroke="none"/>`);
  }
  spec.series.forEach((series, i) => {
    const valid = series.points.filter(([, y]) => Number.isFinite(y));
    const dash = series.dashed ? ' stroke-dasharray="6 4"' : '';
    const opacity = series.opacity === undefined ? '' : ` opacity="${series.opacity}"`;
    if (valid.length > 1) {
      const path = valid.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      out.push(`<polyline points="${path}" fill="none" stroke="${series.color}" stroke-width="2"${dash}${opacity}/>`);
    }
    for (const [x, y] of valid) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${series.color}"${opacity}/>`);
    const ly = MARGIN.top + 10 + i * 20;
    const lx = MARGIN.left + plotW + 15;
    out.push(`<line x1="${lx}" x2="${lx + 28}" y1="${ly}" y2="${ly}" stroke="${series.color}" stroke-width="2"${dash}${opacity}/>`);
    out.push(`<text x="${lx + 34}" y="${ly + 4}">${escape(series.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

const COLORS: Record<SubjectName, string> = { direct: '#555555', floor: '#ff7f0e', relay: '#1f77b4', 'relay-plain': '#9467bd', 'relay-before': '#8c564b', nginx: '#2ca02c' };

function median(values: readonly number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The p99 series of each subject in `rows`: the median over runs per size, with the min-max band. */
function p99Series(rows: readonly FanoutRow[], subjects: readonly SubjectName[], label: string, dashed: boolean, opacity: number): Series[] {
  const series: Series[] = [];
  for (const subject of subjects) {
    const mine = rows.filter((r) => r.subject === subject && r.done !== undefined);
    if (mine.length === 0) continue;
    const sizes = [...new Set(mine.map((r) => r.subscribers))].sort((a, b) => a - b);
    const p99s = sizes.map((size) => mine.filter((r) => r.subscribers === size).map((r) => r.done?.delay.p99 ?? NaN));
    const runs = Math.max(...p99s.map((v) => v.length));
    series.push({
      name: `${subject} p99${label}${runs > 1 ? `, ${runs} runs` : ''}`,
      points: sizes.map((size, i) => [size, median(p99s[i] ?? [])]),
      band: runs > 1 ? sizes.map((size, i) => [size, Math.min(...(p99s[i] ?? [])), Math.max(...(p99s[i] ?? []))]) : undefined,
      color: COLORS[subject],
      dashed,
      opacity,
    });
  }
  return series;
}

/** The fan-out chart: p99 against subscribers per subject (median line, min-max band over runs); `before` drawn dashed and pale. */
export function fanoutChart(rows: readonly FanoutRow[], before: readonly FanoutRow[] = [], only?: readonly SubjectName[]): string | undefined {
  if (rows.length === 0) return undefined;
  const order: readonly SubjectName[] = ['floor', 'relay-before', 'relay', 'relay-plain', 'nginx', 'direct'];
  const subjects = order.filter((s) => (only ?? order).includes(s));
  const series = [...p99Series(rows, subjects, before.length > 0 ? ' after' : '', false, 1), ...p99Series(before, subjects, ' before', true, 0.55)];
  const title = before.length > 0 ? 'Fan-out p99 delay, before (dashed) and after' : 'Fan-out p99 delay (line: median of runs, band: min to max)';
  return lineChart({ title, xLabel: 'subscribers', yLabel: 'p99 delay, ms (backend write to client parse)', series });
}

/** The fan-out rows of a results JSON written by run.ts (older files have no `run`: one run). */
function rowsOf(file: string): FanoutRow[] {
  const data = JSON.parse(readFileSync(file, 'utf8')) as { fanout?: { rows?: FanoutRow[] } };
  const rows = data.fanout?.rows;
  if (!Array.isArray(rows)) throw new Error(`${file}: no fan-out rows`);
  return rows.map((row) => ({ ...row, run: row.run ?? 1 }));
}

function main(): void {
  const { values, positionals } = parseArgs({
    options: { before: { type: 'string' }, out: { type: 'string' }, subjects: { type: 'string' } },
    allowPositionals: true,
  });
  const file = positionals[0];
  if (file === undefined) throw new Error('usage: chart.js results.json [--before earlier.json] [--out chart.svg] [--subjects floor,relay,nginx,direct]');
  const only = values.subjects?.split(',').map((s) => s.trim()) as SubjectName[] | undefined;
  const svg = fanoutChart(rowsOf(file), values.before === undefined ? [] : rowsOf(values.before), only);
  if (svg === undefined) throw new Error(`${file}: no rows to draw`);
  const out = values.out ?? file.replace(/\.json$/, '') + '-fanout.svg';
  writeFileSync(out, svg);
  console.error(`chart: wrote ${out}`);
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    console.error('chart:', err instanceof Error ? err.message : err);
    process.exit(1);
  }
}
