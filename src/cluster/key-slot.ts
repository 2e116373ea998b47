/** Hash slots of a Redis Cluster. */
const SLOTS = 16_384;

/** CRC16-CCITT (XMODEM: polynomial 0x1021, start 0), the checksum Redis Cluster hashes keys with. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/**
 * The slot of a key (or shard channel) in a Redis Cluster. [spec] Redis Cluster specification,
 * "Hash tags": when the key holds a `{` and a later `}` with at least one byte between them,
 * only those bytes are hashed.
 */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key);
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOTS;
  }
  return crc16(bytes) % SLOTS;
}
