/**
 * What a plain `GET` of a breaker's packed record (common.lua `encode`) tells an acquire without
 * running a script: whether the breaker is closed with no override, and then its generation, run
 * of failures and last close. That is all acquire.lua's hot path reads to admit a call when there
 * is no concurrency limit, and it writes nothing there: so the acquire can be answered from the
 * value as it stands, one native command instead of a script.
 *
 * Anything else is not answered here (`null`: the caller runs the script, which also reports and
 * resets what does not parse). The reader is at least as strict as common.lua's `decode`: every
 * field is walked and bounded as it checks it, to the last byte, so a value the script would
 * reset as corrupt is never admitted under its old generation.
 */

/** A closed breaker with no override, as its record says. */
export interface ClosedView {
  readonly generation: number;
  readonly consecutiveFailures: number;
  /** When it last closed, in the store's ms (0: never). */
  readonly closedAt: number;
}

// common.lua's bounds (MARK, MAX_VARINT, MAX_SAFE, MAX_ID, MAX_WRITERS, MAX_REASON, MAX_REPORTERS).
const MARK = 0xa0;
const MAX_VARINT = 18_014_398_509_481_984;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MAX_ID = 65;
const MAX_WRITERS = 512;
const MAX_REASON = 800;
const MAX_REPORTERS = 32;
const MASK_LIMIT = 262_144;

/** A cursor over the record's bytes; every reader answers -1 for what common.lua rejects. */
class Cursor {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}

  /** An unsigned varint (common.lua get_u), or -1. */
  u(): number {
    const bytes = this.bytes;
    let x = 0;
    let scale = 1;
    while (this.pos < bytes.length) {
      const byte = bytes[this.pos++]!;
      if (byte < 128) {
        x += byte * scale;
        return x > MAX_VARINT ? -1 : x;
      }
      x += (byte - 128) * scale;
      scale *= 128;
      if (scale > 72_057_594_037_927_936) return -1; // more than 8 bytes
    }
    return -1;
  }

  /** A count (get_count): a varint up to MAX_SAFE, or -1. */
  count(): number {
    const x = this.u();
    return x > MAX_SAFE ? -1 : x;
  }

  /** A time or count relative to `base` (get_at), landing in [0, MAX_SAFE]; or -1. */
  at(base: number): number {
    const z = this.u();
    if (z < 0) return -1;
    const t = base + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
    return t < 0 || t > MAX_SAFE ? -1 : t;
  }

  /** Skips a text of at most `max` bytes (get_text); false when malformed. */
  text(max: number, nonEmpty: boolean): boolean {
    const n = this.u();
    if (n < 0 || n > max || (nonEmpty && n === 0) || this.pos + n > this.bytes.length) return false;
    this.pos += n;
    return true;
  }

  /** Skips a list of (text id, number relative to `base`) entries (get_entries); false when malformed. */
  entries(maxN: number, maxId: number, base: number): boolean {
    const n = this.u();
    if (n < 0 || n > maxN) return false;
    for (let i = 0; i < n; i++) if (!this.text(maxId, true) || this.at(base) < 0) return false;
    return true;
  }
}

/**
 * The record `bytes` (a `GET` of the breaker's key) as a closed breaker with no override, or null
 * when it is anything else: another state, an override, or not a record common.lua reads.
 * `bucketMs` is the policy's (reporters' buckets are stored relative to the stamp's bucket).
 */
export function closedView(bytes: Uint8Array, bucketMs: number): ClosedView | null {
  const length = bytes.length;
  if (length < 7) return null;
  // Closed (state 0) with no override (0): the first byte is the mark itself.
  if (bytes[0] !== MARK) return null;
  const c = new Cursor(bytes);
  c.pos = 1;
  const mask = c.u();
  if (mask < 0 || mask >= MASK_LIMIT || c.pos + 4 > length) return null;
  const stamp =
    ((bytes[c.pos]! * 256 + bytes[c.pos + 1]!) * 256 + bytes[c.pos + 2]!) * 256 + bytes[c.pos + 3]!;
  c.pos += 4;
  const ms = stamp * 1000;
  const generation = c.at(stamp * 100_000);
  if (generation < 1) return null;
  const has = (bit: number): boolean => (mask & bit) !== 0;
  let consecutiveFailures = 0;
  if (has(1)) {
    consecutiveFailures = c.count();
    if (consecutiveFailures < 0) return null;
  }
  if (has(2) || has(4)) {
    let n = 1;
    if (has(4)) {
      n = c.u();
      if (n <= 1 || n > length || has(2)) return null;
    }
    for (let i = 0; i < n; i++) {
      // The bucket's index, relative to the one before: after the first it must move forward.
      const d = c.u();
      if (d < 0 || (i > 0 && (d % 2 === 1 || d === 0)) || c.pos >= length) return null;
      const which = bytes[c.pos++]!;
      if (which > 15) return null;
      for (let bit = 1; bit <= 8; bit *= 2) if ((which & bit) !== 0 && c.count() < 0) return null;
    }
  }
  if (has(8) || has(16)) {
    let n = 1;
    if (has(16)) {
      n = c.u();
      if (n <= 1 || n > MAX_WRITERS || has(8)) return null;
    }
    // Writers' ids are told apart (decode refuses one id twice among those still live; this
    // reader, not knowing the server's time, refuses one id twice at all).
    const ids = n === 1 ? null : new Set<string>();
    for (let i = 0; i < n; i++) {
      const head = c.u();
      if (head < 0) return null;
      const len = Math.floor(head / 4);
      if (len < 1 || len > MAX_ID || c.pos + len > length) return null;
      if (ids !== null) {
        const id = String.fromCharCode(...bytes.subarray(c.pos, c.pos + len));
        if (ids.has(id)) return null;
        ids.add(id);
      }
      c.pos += len;
      if (head % 2 === 0 && c.at(stamp) < 0) return null;
      if (c.count() < 0) return null;
      if (head % 4 < 2) {
        const numbers = c.u();
        if (numbers < 0 || numbers > length) return null;
        for (let k = 0; k < numbers; k++) if (c.count() < 0) return null;
      }
    }
  }
  let closedAt = 0;
  if (has(32)) {
    closedAt = c.at(ms);
    if (closedAt < 0) return null;
  }
  if (has(64) && !c.entries(length, MAX_ID, ms)) return null;
  if (has(128) && c.count() < 0) return null;
  if (has(256) && c.at(ms) < 0) return null;
  if (has(512) && c.at(ms) < 0) return null;
  if (has(1024) && c.count() < 0) return null;
  if (has(2048) && c.count() < 0) return null;
  if (has(4096) && !c.entries(length, MAX_ID, ms)) return null;
  if (has(8192) && c.at(ms) < 0) return null;
  if (has(16384) && !c.text(MAX_REASON, false)) return null;
  if (has(32768) && !c.entries(MAX_REPORTERS, 64, Math.floor(ms / bucketMs))) return null;
  if (has(65536)) {
    const tr = c.count();
    if (tr < 0 || tr > 1_000_000) return null;
  }
  if (has(131072) && c.at(ms) < 0) return null;
  if (c.pos !== length) return null;
  return { generation, consecutiveFailures, closedAt };
}
