/** How an upload is cut into chunks for processing. */
export interface Chunking {
  /** Bytes per chunk. */
  readonly chunkSize: number;
  /** Bytes each chunk repeats from the end of the previous one; less than `chunkSize`. */
  readonly chunkOverlap: number;
}

export const DEFAULT_CHUNKING: Chunking = { chunkSize: 1000, chunkOverlap: 200 };
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

/**
 * The number of chunks of a file of `size` bytes. Chunk `i` starts at
 * `i * (chunkSize - chunkOverlap)` and is `chunkSize` long, the last one ending at
 * the end of the file, so:
 *
 *   0                                                          when size = 0
 *   1                                                          when 0 < size <= chunkSize
 *   1 + ceil((size - chunkSize) / (chunkSize - chunkOverlap))  otherwise
 */
export function totalChunks(size: number, { chunkSize, chunkOverlap }: Chunking): number {
  if (size <= 0) return 0;
  if (size <= chunkSize) return 1;
  return 1 + Math.ceil((size - chunkSize) / (chunkSize - chunkOverlap));
}

/** The byte range `[start, end)` of chunk `index` of a file of `size` bytes. */
export function chunkRange(index: number, size: number, { chunkSize, chunkOverlap }: Chunking): { start: number; end: number } {
  const start = index * (chunkSize - chunkOverlap);
  return { start, end: Math.min(size, start + chunkSize) };
}
