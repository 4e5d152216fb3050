/**
 * The packed Redis record (src/stores/redis/lua/common.lua, `encode` and `decode`) read and
 * written from JavaScript, for tests: to look inside a record, or to plant one. A second
 * implementation on purpose: test/redis/keys.test.ts checks that each reads what the other wrote.
 */
import type { Cluster, Redis } from 'ioredis';

export interface PackedLease {
  id: string;
  expiresAt: number;
}

export interface PackedBucket {
  index: number;
  s: number;
  f: number;
  sl: number;
  ig: number;
}

export interface PackedWriter {
  id: string;
  floor: number;
  untilS: number;
  numbers: number[];
}

export interface PackedRecord {
  state: 'closed' | 'open' | 'half-open';
  override: '' | 'forced-open' | 'forced-closed' | 'metrics-only';
  /** When it was written, the server's seconds. */
  stamp: number;
  gen: number;
  cf: number;
  buckets: PackedBucket[];
  /** Every writer's entry, past its time or not. */
  w: PackedWriter[];
  ca: number;
  slots: PackedLease[];
  seq: number;
  openedAt: number;
  openUntil: number;
  reopens: number;
  ps: number;
  leases: PackedLease[];
  ou: number;
  ovr: string;
  rp: Array<{ id: string; bucket: number }>;
  tr: number;
  ta: number;
}

const STATES = ['closed', 'open', 'half-open'] as const;

/** A closed record at `stamp` holding nothing (generation 100), to spread fields over. */
export function emptyRecord(stamp: number): PackedRecord {
  return {
    state: 'closed',
    override: '',
    stamp,
    gen: 100,
    cf: 0,
    buckets: [],
    w: [],
    ca: 0,
    slots: [],
    seq: 0,
    openedAt: 0,
    openUntil: 0,
    reopens: 0,
    ps: 0,
    leases: [],
    ou: 0,
    ovr: '',
    rp: [],
    tr: 0,
    ta: 0,
  };
}
const OVERRIDES = ['', 'forced-open', 'forced-closed', 'metrics-only'] as const;

/** The record in `value`, with bucket indices in a policy's `bucketMs`; throws when malformed. */
export function decodeRecord(value: Buffer, bucketMs: number): PackedRecord {
  let at = 0;
  const byte = (): number => {
    if (at >= value.length) throw new Error(`the record ends at byte ${at}`);
    return value[at++]!;
  };
  const u = (): number => {
    let x = 0;
    let scale = 1;
    for (;;) {
      const b = byte();
      x += (b & 0x7f) * scale;
      if (b < 0x80) return x;
      scale *= 128;
    }
  };
  const s = (): number => {
    const x = u();
    return x % 2 === 0 ? x / 2 : -(x + 1) / 2;
  };
  const text = (): string => {
    const n = u();
    const out = value.subarray(at, at + n).toString('latin1');
    if (at + n > value.length) throw new Error('a text runs past the end');
    at += n;
    return out;
  };
  const head = byte();
  if (head < 0xa0 || head >= 0xac) throw new Error(`first byte ${head.toString(16)}`);
  const mask = u();
  const stamp = value.readUInt32BE(at);
  at += 4;
  const ms = stamp * 1000;
  const base = Math.floor(ms / bucketMs);
  const has = (bit: number) => (mask & bit) !== 0;
  const leases = (): PackedLease[] =>
    Array.from({ length: u() }, () => ({ id: text(), expiresAt: ms + s() }));
  const r: PackedRecord = {
    ...emptyRecord(stamp),
    state: STATES[(head - 0xa0) >> 2]!,
    override: OVERRIDES[(head - 0xa0) & 3]!,
    gen: stamp * 100_000 + s(),
    cf: has(1) ? u() : 0,
  };
  const buckets = has(2) ? 1 : has(4) ? u() : 0;
  let before = base;
  for (let i = 0; i < buckets; i++) {
    const index = before + s();
    const which = byte();
    r.buckets.push({
      index,
      s: which & 1 ? u() : 0,
      f: which & 2 ? u() : 0,
      sl: which & 4 ? u() : 0,
      ig: which & 8 ? u() : 0,
    });
    before = index;
  }
  const writers = has(8) ? 1 : has(16) ? u() : 0;
  for (let i = 0; i < writers; i++) {
    const head = u();
    const id = value.subarray(at, at + (head >> 2)).toString('latin1');
    at += head >> 2;
    const untilS = head & 1 ? stamp + 61 : stamp + s();
    const floor = u();
    const numbers = head & 2 ? [floor] : Array.from({ length: u() }, () => u());
    r.w.push({ id, floor, untilS, numbers });
  }
  if (has(32)) r.ca = ms + s();
  if (has(64)) r.slots = leases();
  if (has(128)) r.seq = u();
  if (has(256)) r.openedAt = ms + s();
  if (has(512)) r.openUntil = ms + s();
  if (has(1024)) r.reopens = u();
  if (has(2048)) r.ps = u();
  if (has(4096)) r.leases = leases();
  if (has(8192)) r.ou = ms + s();
  if (has(16384)) r.ovr = text();
  if (has(32768)) r.rp = Array.from({ length: u() }, () => ({ id: text(), bucket: base + s() }));
  if (has(65536)) r.tr = u();
  if (has(131072)) r.ta = ms + s();
  if (at !== value.length) throw new Error(`${value.length - at} bytes past the end of the record`);
  return r;
}

/** `r` packed as common.lua's `encode` packs it (at `r.stamp`), for a policy's `bucketMs`. */
export function encodeRecord(r: PackedRecord, bucketMs: number): Buffer {
  const out: number[] = [];
  const u = (x: number) => {
    while (x >= 128) {
      out.push((x % 128) + 128);
      x = Math.floor(x / 128);
    }
    out.push(x);
  };
  const s = (x: number) => u(x >= 0 ? x * 2 : -x * 2 - 1);
  const text = (t: string) => {
    u(t.length);
    out.push(...Buffer.from(t, 'latin1'));
  };
  const ms = r.stamp * 1000;
  const base = Math.floor(ms / bucketMs);
  const fields: Array<[boolean, () => void]> = [
    [r.cf !== 0, () => u(r.cf)],
    [r.buckets.length === 1, () => undefined],
    [r.buckets.length > 1, () => u(r.buckets.length)],
    [r.w.length === 1, () => undefined],
    [r.w.length > 1, () => u(r.w.length)],
  ];
  let mask = 0;
  const later: Array<[boolean, () => void]> = [
    [r.ca !== 0, () => s(r.ca - ms)],
    [r.slots.length > 0, () => leases(r.slots)],
    [r.seq !== 0, () => u(r.seq)],
    [r.openedAt !== 0, () => s(r.openedAt - ms)],
    [r.openUntil !== 0, () => s(r.openUntil - ms)],
    [r.reopens !== 0, () => u(r.reopens)],
    [r.ps !== 0, () => u(r.ps)],
    [r.leases.length > 0, () => leases(r.leases)],
    [r.ou !== 0, () => s(r.ou - ms)],
    [r.ovr !== '', () => text(r.ovr)],
    [
      r.rp.length > 0,
      () => {
        u(r.rp.length);
        for (const x of r.rp) {
          text(x.id);
          s(x.bucket - base);
        }
      },
    ],
    [r.tr !== 0, () => u(r.tr)],
    [r.ta !== 0, () => s(r.ta - ms)],
  ];
  [...fields, ...later].forEach(([present], i) => {
    if (present) mask += 2 ** i;
  });
  function leases(list: PackedLease[]) {
    u(list.length);
    for (const l of list) {
      text(l.id);
      s(l.expiresAt - ms);
    }
  }
  out.push(0xa0 + STATES.indexOf(r.state) * 4 + OVERRIDES.indexOf(r.override));
  u(mask);
  out.push((r.stamp >>> 24) & 255, (r.stamp >>> 16) & 255, (r.stamp >>> 8) & 255, r.stamp & 255);
  s(r.gen - r.stamp * 100_000);
  if (r.cf !== 0) u(r.cf);
  if (r.buckets.length > 1) u(r.buckets.length);
  let before = base;
  for (const b of r.buckets) {
    s(b.index - before);
    out.push((b.s > 0 ? 1 : 0) + (b.f > 0 ? 2 : 0) + (b.sl > 0 ? 4 : 0) + (b.ig > 0 ? 8 : 0));
    for (const n of [b.s, b.f, b.sl, b.ig]) if (n > 0) u(n);
    before = b.index;
  }
  if (r.w.length > 1) u(r.w.length);
  for (const e of r.w) {
    const single = e.numbers.length === 1 && e.numbers[0] === e.floor;
    const usual = e.untilS === r.stamp + 61;
    u(e.id.length * 4 + (single ? 2 : 0) + (usual ? 1 : 0));
    out.push(...Buffer.from(e.id, 'latin1'));
    if (!usual) s(e.untilS - r.stamp);
    u(e.floor);
    if (!single) {
      u(e.numbers.length);
      for (const x of e.numbers) u(x);
    }
  }
  for (const [present, write] of later) if (present) write();
  return Buffer.from(out);
}

/** The record at `key`, or null when there is none. */
export async function readRecord(
  client: Redis | Cluster,
  key: string,
  bucketMs: number,
): Promise<PackedRecord | null> {
  const value = await client.getBuffer(key);
  return value === null ? null : decodeRecord(value, bucketMs);
}

/** Writes `r` at `key`, keeping the key's TTL. */
export async function writeRecord(
  client: Redis | Cluster,
  key: string,
  r: PackedRecord,
  bucketMs: number,
): Promise<void> {
  const ttl = await client.pttl(key);
  if (ttl > 0) await client.set(key, encodeRecord(r, bucketMs), 'PX', ttl);
  else await client.set(key, encodeRecord(r, bucketMs));
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const ID_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789._-';

/** A random record at `stamp` whose writers are all live at `stamp`, edge values included. */
export function randomRecord(next: () => number, stamp: number, bucketMs: number): PackedRecord {
  const int = (max: number) => Math.floor(next() * (max + 1));
  const pick = <T>(...xs: T[]): T => xs[int(xs.length - 1)]!;
  const count = () => pick(0, 0, 1, int(100), int(2 ** 20), MAX_SAFE, int(MAX_SAFE));
  const time = () =>
    pick(0, stamp * 1000 + int(60_000), stamp * 1000 - int(60_000), int(MAX_SAFE), MAX_SAFE, 1);
  const id = (max: number) =>
    Array.from({ length: 1 + int(max - 1) }, () => ID_CHARS[int(ID_CHARS.length - 1)]).join('');
  const leases = (): PackedLease[] =>
    Array.from({ length: int(4) }, () => ({ id: id(33), expiresAt: time() }));
  const base = Math.floor((stamp * 1000) / bucketMs);
  let index = base - int(20);
  const writers = new Map<string, PackedRecord['w'][number]>();
  for (let i = int(5); i > 0; i--) {
    const floor = count();
    const numbers = pick(
      [floor],
      [],
      [floor, Math.min(MAX_SAFE, floor + 1)],
      Array.from({ length: int(3) }, () => count()),
    );
    writers.set(id(65), { id: '', floor, untilS: pick(stamp + 61, stamp + 1 + int(120)), numbers });
  }
  return {
    state: pick('closed', 'open', 'half-open'),
    override: pick('', 'forced-open', 'forced-closed', 'metrics-only'),
    stamp,
    gen: pick(stamp * 100_000, stamp * 100_000 + int(99), 1 + int(MAX_SAFE - 1), MAX_SAFE, 1),
    cf: count(),
    buckets: Array.from({ length: pick(0, 1, int(12)) }, () => ({
      index: (index += 1 + pick(0, 0, int(5))),
      s: count(),
      f: count(),
      sl: count(),
      ig: count(),
    })),
    w: [...writers].map(([writer, e]) => ({ ...e, id: writer })),
    ca: time(),
    slots: leases(),
    seq: count(),
    openedAt: time(),
    openUntil: time(),
    reopens: count(),
    ps: count(),
    leases: leases(),
    ou: time(),
    ovr: pick('', 'deploy', Buffer.from(Array.from({ length: int(800) }, () => int(255))).toString('latin1')),
    rp: Array.from({ length: pick(0, int(32)) }, () => ({ id: id(64), bucket: base + int(40) - 20 })),
    tr: pick(0, int(1_000_000), 1_000_000),
    ta: time(),
  };
}
