import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

/** The first line of every export. */
export const EXPORT_HEADER = 'row,order_id,sku,product,quantity,unit_price_eur,total_eur,ordered_at\n';

const PRODUCTS = [
  'Café crème 250 g',
  'Smørrebrød board',
  'Crème brûlée torch',
  'Jalapeño sauce',
  'Über-cable USB-C 2 m',
  'Matcha 抹茶 40 g',
  'Piñata (large)',
  'Gâteau tin 24 cm',
  'Straße map set',
  'Açaí bowl kit',
] as const;

const ROWS_PER_BATCH = 512;
const EPOCH = Date.UTC(2024, 0, 1);

/**
 * The rows `from` to `to - 1` of the CSV export of `code`, as text. The content is
 * a pure function of the code and the row number, so a finished job needs no
 * storage: its file is generated again, identically, for each download.
 */
function exportRows(code: string, from: number, to: number): string {
  const seed = createHash('sha256').update(code).digest().readUInt32BE(0);
  let text = '';
  for (let row = from; row < to; row++) {
    const r = mix(seed, row);
    const product = PRODUCTS[r % PRODUCTS.length] as string;
    const quantity = 1 + (r % 9);
    const cents = 199 + (r % 9800);
    const orderedAt = new Date(EPOCH + row * 97_000 + (r % 60_000)).toISOString();
    text += `${row + 1},ORD-${(r % 1_000_000).toString().padStart(6, '0')},SKU-${(r >>> 8) % 10_000},"${product}",${quantity},${money(cents)},${money(cents * quantity)},${orderedAt}\n`;
  }
  return text;
}

/** The byte length of rows `from` to `to - 1`, for the job to measure its file as it "exports" it. */
export function exportRowsBytes(code: string, from: number, to: number): number {
  let bytes = 0;
  for (let start = from; start < to; start += ROWS_PER_BATCH) {
    bytes += Buffer.byteLength(exportRows(code, start, Math.min(to, start + ROWS_PER_BATCH)));
  }
  return bytes;
}

/** The whole file as a stream, generated batch by batch as the reader pulls, so memory stays flat. */
export function exportStream(code: string, rows: number): Readable {
  return Readable.from(batches(code, rows), { objectMode: false });
}

function* batches(code: string, rows: number): Generator<Buffer> {
  yield Buffer.from(EXPORT_HEADER);
  for (let start = 0; start < rows; start += ROWS_PER_BATCH) {
    yield Buffer.from(exportRows(code, start, Math.min(rows, start + ROWS_PER_BATCH)));
  }
}

// A small integer hash (Murmur3 finalizer): deterministic, well spread, no state.
function mix(seed: number, row: number): number {
  let h = (seed ^ Math.imul(row + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

function money(cents: number): string {
  return `${Math.floor(cents / 100)}.${(cents % 100).toString().padStart(2, '0')}`;
}
