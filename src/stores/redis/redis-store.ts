import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

import type {
  AcquireResult,
  BreakerPolicy,
  BreakerState,
  ForceOptions,
  OutcomeBatch,
  Override,
  Snapshot,
  Transition,
  UpdateResult,
} from '../../core/types.js';
import { MAX_REASON_LENGTH, NO_RECORD, resetsOnly, throttleMillionths } from '../../core/reducer.js';
import { StoreError } from '../../errors.js';
import { closedAdmission, closedFields, snapshotFrom } from '../snapshot-fields.js';
import type { Logger } from '../../options.js';
import { invalid } from '../../options.js';
import type {
  ListPage,
  RecordedAcquire,
  StateChangeMessage,
  Store,
  StoreTiming,
  SubscribeOptions,
} from '../../store.js';
import type { RecordExaminer, RecordReport } from '../record-report.js';
import {
  DEFAULT_PREFIX,
  breakerKey,
  eventsChannel,
  isRecordMarker,
  nameFromKey,
  reportersKey,
  scanPattern,
  validatePrefix,
} from './keys.js';
import { closedView } from './record-view.js';
import type { LuaScript } from './scripts.generated.js';
import { policyFields } from '../policy-fields.js';
import {
  acquireScript,
  carryScript,
  forceScript,
  heartbeatScript,
  inspectScript,
  library,
  recordScript,
  resetScript,
} from './scripts.generated.js';

/** Options of `RedisStore`. */
export interface RedisStoreOptions {
  /**
   * An ioredis client (`new Redis(...)`) or cluster (`new Redis.Cluster(...)`) you created. The
   * store only sends commands on it: it never closes it and never adds commands to it.
   */
  readonly client: Redis | Cluster;
  /** Prefix of every key and of the events channel; no `{` or `}`. @defaultValue 'circuitry:' */
  readonly prefix?: string;
  /** Told when a corrupt or foreign record is reset. @defaultValue none (a process warning) */
  readonly logger?: Logger;
  /** Called with the breaker name when a corrupt or foreign record is reset. */
  readonly onCorruptRecord?: (name: string) => void;
  /**
   * For tests only: milliseconds added to the Redis server's clock, read on every call, so a
   * test can move the store's time forward. @defaultValue none
   */
  readonly timeOffsetMs?: () => number;
}

const PAGE_SIZE = 100;

/**
 * The policy as ARGV[2] of every operation (common.lua read_policy): one string, built once per
 * policy object, which the server parses once per library load rather than once per call.
 */
const policyTexts = new WeakMap<BreakerPolicy, string>();

function policyText(policy: BreakerPolicy): string {
  let text = policyTexts.get(policy);
  if (text === undefined) {
    const [kind, numbers] = policyFields(policy);
    text = [kind, ...numbers.map(String)].join(':');
    policyTexts.set(policy, text);
  }
  return text;
}

/** How a store runs its Lua: FCALL of the loaded library, or EVALSHA where functions are not available. */
type LuaMode = 'function' | 'script';

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function malformed(operation: string, reply: unknown): StoreError {
  let shown: string;
  try {
    shown = JSON.stringify(reply)?.slice(0, 200) ?? String(reply);
  } catch {
    shown = String(reply);
  }
  return new StoreError(`Redis ${operation} returned a reply of the wrong shape: ${shown}`);
}

const STATES = new Set<string>(['closed', 'open', 'half-open']);
const OVERRIDES = new Set<string>(['', 'forced-open', 'forced-closed', 'metrics-only']);

/** Reads a reply array field by field, failing on the first one of the wrong type. */
class Reply {
  #at = 0;
  constructor(
    readonly operation: string,
    readonly raw: unknown[],
  ) {}

  number(): number {
    const value = this.raw[this.#at++];
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw malformed(this.operation, this.raw);
    return value;
  }

  string(): string {
    const value = this.raw[this.#at++];
    if (typeof value === 'string') return value;
    if (Buffer.isBuffer(value)) return value.toString('utf8');
    throw malformed(this.operation, this.raw);
  }

  state(): BreakerState {
    const value = this.string();
    if (!STATES.has(value)) throw malformed(this.operation, this.raw);
    return value as BreakerState;
  }

  override(): Override | null {
    const value = this.string();
    if (!OVERRIDES.has(value)) throw malformed(this.operation, this.raw);
    return value === '' ? null : (value as Override);
  }

  transition(): Transition | null {
    const from = this.string();
    const to = this.string();
    const generation = this.number();
    if (from === '') return null;
    const states = ['closed', 'open', 'half-open', 'forced-open', 'forced-closed'];
    if (!states.includes(from) || !states.includes(to)) throw malformed(this.operation, this.raw);
    return { from: from as Transition['from'], to: to as Transition['to'], generation };
  }

  /** state, override, generation, openUntil, counts..., now (common.lua snapshot_reply). */
  snapshot(policy: BreakerPolicy): Snapshot {
    // In reply order: the fields are read one after the other.
    return snapshotFrom(
      {
        state: this.state(),
        override: this.override(),
        generation: this.number(),
        openUntil: this.number(),
        successes: this.number(),
        failures: this.number(),
        slow: this.number(),
        ignored: this.number(),
        consecutiveFailures: this.number(),
        activeProbes: this.number(),
        probeSuccesses: this.number(),
        reopens: this.number(),
        now: this.number(),
        overrideUntil: this.number(),
        overrideReason: this.string(),
        closedAt: this.number(),
        activeSlots: this.number(),
      },
      policy,
    );
  }
}

/**
 * How many names `RedisStore` remembers in each of its sets of breakers (with a record; to send
 * to the script first) before it forgets them all.
 */
const MAX_WITH_RECORD = 10_000;

/** Puts `name` in `names` or takes it out; a set grown to MAX_WITH_RECORD names is emptied first. */
function noteName(names: Set<string>, name: string, present: boolean): void {
  if (!present) {
    names.delete(name);
  } else if (!names.has(name)) {
    if (names.size >= MAX_WITH_RECORD) names.clear();
    names.add(name);
  }
}

/**
 * How long the server's clock, as a script last told it, stands for it in an acquire answered
 * from a plain `GET` (see `#serverNow`): clocks drift by far less than a ms in this time.
 */
const SERVER_CLOCK_MS = 60_000;

/**
 * Breaker state in Redis (or Redis Cluster), shared by every process that uses the same server
 * and prefix. Each operation is one round trip running one Lua script, atomic on the server and
 * timed by the server's clock, so workers with skewed clocks agree. What needs no script is not
 * sent one: an acquire without a concurrency limit reads the record with one `GET` and admits
 * from it when the breaker is closed with no override (the script's own answer there, which
 * writes nothing), and a success under a count policy for a breaker with no record is one `EXISTS`.
 * One key per breaker at `<prefix>{<hex name>}`, its record packed into one string; a
 * garbage-collection TTL longer than anything the breaker remembers; transitions published on
 * `<prefix>events`.
 */
export class RedisStore implements Store, RecordExaminer {
  /** First contact 5 s (ioredis connects in the background); per call 200–2,000 ms, adaptive. */
  readonly timing: StoreTiming = Object.freeze({
    connectTimeoutMs: 5_000,
    minCallTimeoutMs: 200,
    maxCallTimeoutMs: 2_000,
  });
  readonly #client: Redis | Cluster;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #logger: Logger | null;
  readonly #onCorruptRecord: ((name: string) => void) | null;
  readonly #timeOffsetMs: (() => number) | null;
  #mode: LuaMode = 'function';
  #loading: Promise<void> | null = null;
  /**
   * Breakers this store's last answer said have a record (see `#noRecord`): their calls go
   * straight to the script. Forgotten whole past MAX_WITH_RECORD names (a tenant forgotten here
   * costs one `EXISTS` more, once).
   */
  readonly #withRecord = new Set<string>();
  /**
   * Breakers whose last answer was not a closed record with no override (open, half-open, an
   * override, a record the script had to reset): their acquires go straight to the script rather
   * than reading the record first. Forgotten whole past MAX_WITH_RECORD names.
   */
  readonly #scriptFirst = new Set<string>();
  /** The server's clock minus this process's, as the last script's answer told it (see `#serverNow`). */
  #clockSkewMs = 0;
  /** When (`Date.now()`) `#clockSkewMs` was learned; 0: never. */
  #clockSkewAt = 0;
  /** Enforces `maxConcurrent` (see `Store.limitsConcurrency`): slots in the breaker's record. */
  readonly limitsConcurrency = true;
  /** One connection (per cluster node), answered in order: this process's calls land in order. */
  readonly ordered = true;

  constructor(options: RedisStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalid('RedisStore options', 'an object with a `client`', options);
    }
    const client = options.client as unknown;
    if (
      typeof client !== 'object' ||
      client === null ||
      typeof (client as Redis).evalsha !== 'function' ||
      typeof (client as Redis).eval !== 'function'
    ) {
      throw invalid('client', 'an ioredis client or cluster', client);
    }
    this.#client = options.client;
    this.#prefix = validatePrefix(options.prefix ?? DEFAULT_PREFIX);
    this.#channel = eventsChannel(this.#prefix);
    this.#logger = options.logger ?? null;
    this.#onCorruptRecord = options.onCorruptRecord ?? null;
    this.#timeOffsetMs = options.timeOffsetMs ?? null;
    if (typeof (client as Redis).fcall !== 'function') this.#mode = 'script';
  }

  async acquire(name: string, policy: BreakerPolicy): Promise<AcquireResult> {
    if (policy.maxConcurrent === 0 && !this.#scriptFirst.has(name)) {
      const read = await this.#readAcquire(name, policy);
      if (read !== null) return read;
    }
    const acquired = this.#acquired(name, await this.#run(acquireScript, name, policy, []));
    this.#saw(name, acquired.generation);
    this.#learn(name, acquired);
    return acquired;
  }

  /**
   * An acquire without a concurrency limit answered from one `GET` of the record, as acquire.lua
   * answers it without writing: no record admits under generation 0; a closed record with no
   * override admits under its generation. Null for anything else (the script answers it), and
   * for a record that closed once while the server's clock is not known here (`#serverNow`).
   */
  async #readAcquire(name: string, policy: BreakerPolicy): Promise<AcquireResult | null> {
    const client = this.#client;
    if (typeof client.getBuffer !== 'function') return null;
    let value: Buffer | null;
    try {
      value = await client.getBuffer(breakerKey(this.#prefix, name));
    } catch (error) {
      // Not a string (an earlier version's hash): the script resets it.
      if (!errorText(error).includes('WRONGTYPE')) throw error;
      noteName(this.#scriptFirst, name, true);
      return null;
    }
    if (value === null) {
      this.#saw(name, NO_RECORD);
      return closedAdmission(NO_RECORD, this.#now(), 0, 0);
    }
    const view = closedView(value, policy.bucketMs);
    if (view === null) {
      noteName(this.#scriptFirst, name, true);
      return null;
    }
    let now = this.#now();
    if (view.closedAt > 0) {
      // The close anchors the recovery ramp in the store's time (`closedAt` against `now`).
      const server = this.#serverNow();
      if (server === null) return null;
      now = server;
    }
    this.#saw(name, view.generation);
    return closedAdmission(view.generation, now, view.closedAt, view.consecutiveFailures);
  }

  /** Notes what a script's acquire said: the server's clock, and whether to read the record first. */
  #learn(name: string, acquired: AcquireResult): void {
    this.#clockSkewAt = Date.now();
    this.#clockSkewMs = acquired.now - (this.#timeOffsetMs?.() ?? 0) - this.#clockSkewAt;
    noteName(this.#scriptFirst, name, acquired.state !== 'closed' || acquired.override !== null);
  }

  /**
   * The store's time now (the server's clock, plus `timeOffsetMs`) from the skew a script's answer
   * showed within the last SERVER_CLOCK_MS (within a round trip of it); null when none did.
   */
  #serverNow(): number | null {
    const local = Date.now();
    if (this.#clockSkewAt === 0 || local - this.#clockSkewAt > SERVER_CLOCK_MS) return null;
    return local + this.#clockSkewMs + (this.#timeOffsetMs?.() ?? 0);
  }

  /**
   * Whether the breaker has no record, by a plain `EXISTS` (no script: about a `GET`), for a call
   * a missing record answers alone: a success under a count policy carried on an acquire without
   * a concurrency limit (no run to reset: nothing written; closed, admitted under generation 0,
   * as the script's own first check). A breaker this store last saw with a record is not asked:
   * false, and its call goes to the script.
   */
  async #noRecord(name: string): Promise<boolean> {
    if (this.#withRecord.has(name) || typeof this.#client.exists !== 'function') return false;
    if ((await this.#client.exists(breakerKey(this.#prefix, name))) === 0) return true;
    this.#saw(name, 1);
    return false;
  }

  /** Notes what an answer said of the breaker's record (generation 0: none). */
  #saw(name: string, generation: number): void {
    noteName(this.#withRecord, name, generation !== NO_RECORD);
  }

  /**
   * The store's time for an answer given without a script (no record: nothing to compare it
   * with), from this process's clock and `timeOffsetMs`.
   */
  #now(): number {
    return Date.now() + (this.#timeOffsetMs?.() ?? 0);
  }

  /**
   * `record` then `acquire` in one script (carry.lua), so a breaker whose call starts while the
   * outcome of the one before is still to be written pays one round trip for both.
   */
  async recordThenAcquire(
    name: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
  ): Promise<RecordedAcquire> {
    if (
      policy.maxConcurrent === 0 &&
      resetsOnly(policy, batch) &&
      (batch.slots?.length ?? 0) === 0 &&
      (await this.#noRecord(name))
    ) {
      return noRecordCarry(policy, this.#now(), admittedUnderGone(batch));
    }
    const raw = await this.#runRecord(carryScript, name, policy, batch);
    if (typeof raw[0] === 'string' && raw[0] !== 'update') {
      const short = shortCarry(raw, policy);
      this.#saw(name, short.acquire.generation);
      this.#learn(name, short.acquire);
      return short;
    }
    const [recorded, acquired] = raw;
    if (raw.length !== 2 || !Array.isArray(recorded) || !Array.isArray(acquired))
      throw malformed('carry', raw);
    const result = {
      update: this.#update('record', recorded, name, policy),
      acquire: this.#acquired(name, acquired),
    };
    this.#saw(name, result.acquire.generation);
    this.#learn(name, result.acquire);
    return result;
  }

  #acquired(name: string, raw: unknown[]): AcquireResult {
    const reply = new Reply('acquire', raw);
    if (reply.string() !== 'acquire') throw malformed('acquire', raw);
    this.#corrupt(name, reply.number());
    const now = reply.number();
    const admitted = reply.number() === 1;
    const reason = reply.string();
    const retryAfterMs = reply.number();
    const generation = reply.number();
    const lease = reply.string();
    const state = reply.state();
    const override = reply.override();
    const openUntil = reply.number();
    const transition = reply.transition();
    const consecutiveFailures = reply.number();
    const closedAt = reply.number();
    const slot = reply.string();
    if (
      !admitted &&
      reason !== 'open' &&
      reason !== 'half-open-full' &&
      reason !== 'forced-open' &&
      reason !== 'concurrency-limit'
    ) {
      throw malformed('acquire', raw);
    }
    return {
      admitted,
      reason: admitted ? null : (reason as AcquireResult['reason']),
      retryAfterMs,
      generation,
      lease: lease === '' ? null : lease,
      slot: slot === '' ? null : slot,
      state,
      override,
      openUntil,
      now,
      transition,
      consecutiveFailures,
      closedAt,
    };
  }

  async record(name: string, policy: BreakerPolicy, batch: OutcomeBatch): Promise<UpdateResult> {
    if (resetsOnly(policy, batch) && (batch.slots?.length ?? 0) === 0 && (await this.#noRecord(name))) {
      return noRecordUpdate(policy, this.#now(), admittedUnderGone(batch));
    }
    const raw = await this.#runRecord(recordScript, name, policy, batch);
    const update = this.#update('record', raw, name, policy);
    this.#saw(name, update.snapshot.generation);
    return update;
  }

  /**
   * The breaker's snapshot, or null when the key holds nothing or nothing this version can read
   * (to a breaker that is no record: its next write replaces it). Writes nothing.
   */
  async inspect(name: string, policy: BreakerPolicy): Promise<Snapshot | null> {
    const report = await this.examine(name, policy);
    return report.kind === 'record' ? report.snapshot : null;
  }

  /**
   * What the key of `name` holds, for operators (`RecordExaminer`): a record, something that is
   * not a readable record (another type, a string that is not a packed record: with the
   * reason, left untouched), or nothing. One read-only script; nothing is written.
   */
  async examine(name: string, policy: BreakerPolicy): Promise<RecordReport> {
    const raw = await this.#run(inspectScript, name, policy, []);
    const reply = new Reply('inspect', raw);
    const kind = reply.string();
    if (kind === 'none') return { kind: 'none' };
    if (kind === 'corrupt') return { kind: 'corrupt', reason: reply.string() };
    if (kind !== 'snapshot') throw malformed('inspect', raw);
    const snapshot = reply.snapshot(policy);
    const throttleRate = reply.number();
    const reportedAt = reply.number();
    return {
      kind: 'record',
      snapshot:
        reportedAt === 0
          ? snapshot
          : { ...snapshot, throttle: { rate: throttleRate / 1_000_000, reportedAt } },
    };
  }

  async force(
    name: string,
    policy: BreakerPolicy,
    override: Override | null,
    options: ForceOptions = {},
  ): Promise<UpdateResult> {
    const args = [
      override ?? '',
      options.forMs ?? 0,
      options.reason?.slice(0, MAX_REASON_LENGTH) ?? '',
      options.yieldToOperator === true ? '1' : '0',
    ];
    return this.#update('force', await this.#run(forceScript, name, policy, args), name, policy);
  }

  /** Starts the breaker afresh, keeping its override (`Store.reset`); never creates a record. */
  async reset(name: string, policy: BreakerPolicy): Promise<UpdateResult> {
    return this.#update('reset', await this.#run(resetScript, name, policy, []), name, policy);
  }

  /**
   * Breaker names starting with `prefix`, a page at a time, by `SCAN` (on every master of a
   * cluster). For operators and tools: a page may hold fewer names than asked, and a name
   * written during the scan may be missed or, on a cluster resharding, repeated.
   *
   * Only keys that carry the record marker are listed: a string whose first byte marks a packed
   * record (keys.ts isRecordMarker). Whatever else matches the key pattern (another application's
   * keys under the same prefix) is left out, checked with one pipelined `GETRANGE <key> 0 0` per
   * candidate, which writes nothing and fails harmlessly on a key of another type.
   */
  async list(prefix: string, cursor: string | null = null): Promise<ListPage> {
    const nodes = 'nodes' in this.#client ? this.#client.nodes('master') : [this.#client];
    let [node, position] = cursor === null ? [0, '0'] : parseCursor(cursor, nodes.length);
    const pattern = scanPattern(this.#prefix, prefix);
    const keys: string[] = [];
    while (node < nodes.length) {
      const client = nodes[node]!;
      const [next, found] = await client.scan(position, 'MATCH', pattern, 'COUNT', PAGE_SIZE);
      const candidates: [string, string][] = [];
      for (const key of found) {
        const name = nameFromKey(this.#prefix, key);
        if (name !== null && name.startsWith(prefix)) candidates.push([key, name]);
      }
      if (candidates.length > 0) {
        const pipeline = client.pipeline();
        for (const [key] of candidates) pipeline.getrangeBuffer(key, 0, 0);
        const markers = (await pipeline.exec()) ?? [];
        candidates.forEach(([, name], i) => {
          const [error, marker] = markers[i] ?? [null, null];
          if (error === null && isRecordMarker(marker as Buffer | null)) keys.push(name);
        });
      }
      if (next === '0') {
        node += 1;
        position = '0';
      } else {
        position = next;
      }
      if (keys.length > 0) break;
    }
    return { keys, cursor: node < nodes.length ? `${node}:${position}` : null };
  }

  /**
   * Hears every transition any process makes, on a connection of its own (`client.duplicate()`)
   * that the returned function (or `options.signal`) closes. Resolves once subscribed, or once the
   * first attempt failed or took longer than the first-contact bound: a subscription that fails is
   * retried with backoff (up to 30 s apart) until it gets through. Pub/sub is at-most-once, so
   * when the subscription comes back after a drop, or gets through late, `options.onResync` is
   * called: pushes may have been missed and breakers re-read the state.
   */
  async subscribe(
    listener: (message: StateChangeMessage) => void,
    options: SubscribeOptions = {},
  ): Promise<() => Promise<void>> {
    const subscriber = this.#client.duplicate();
    let closed = false;
    let subscribed = false;
    let retryTimer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    const resync = (): void => {
      if (!closed) options.onResync?.();
    };
    subscriber.on('error', () => {
      // Reconnects on its own; missed messages are covered by onResync.
    });
    subscriber.on('message', (channel: string, text: string) => {
      if (channel !== this.#channel) return;
      const message = this.#parseMessage(text);
      if (message !== null) listener(message);
    });
    // After a drop ioredis subscribes again by itself; whatever was published meanwhile is lost.
    let readyBefore = false;
    subscriber.on('ready', () => {
      if (readyBefore && subscribed) resync();
      readyBefore = true;
    });
    const close = (): Promise<void> => {
      if (closed) return Promise.resolve();
      closed = true;
      clearTimeout(retryTimer);
      subscriber.removeAllListeners('message');
      // Not QUIT: it would wait in the offline queue of an unreachable server.
      subscriber.disconnect();
      return Promise.resolve();
    };
    options.signal?.addEventListener('abort', () => void close(), { once: true });
    const attempt = (): Promise<boolean> =>
      subscriber.subscribe(this.#channel).then(
        () => {
          if (closed) return true;
          if (failures > 0) resync();
          subscribed = true;
          return true;
        },
        () => {
          if (closed) return false;
          failures += 1;
          retryTimer = setTimeout(() => void attempt(), Math.min(30_000, 100 * 2 ** Math.min(failures, 9)));
          retryTimer.unref();
          return false;
        },
      );
    let bound: ReturnType<typeof setTimeout> | undefined;
    const first = attempt();
    await Promise.race([
      first,
      new Promise<void>((resolve) => {
        bound = setTimeout(resolve, this.timing.connectTimeoutMs);
        bound.unref();
      }),
    ]);
    clearTimeout(bound);
    // Got through only after the bound: whatever was pushed before it was missed.
    if (!subscribed) void first.then((ok) => ok && resync());
    return close;
  }

  #parseMessage(text: string): StateChangeMessage | null {
    try {
      const m = JSON.parse(text) as Record<string, unknown>;
      const key = typeof m.key === 'string' ? nameFromKey(this.#prefix, m.key) : null;
      if (
        key === null ||
        typeof m.from !== 'string' ||
        typeof m.to !== 'string' ||
        typeof m.generation !== 'number' ||
        typeof m.openUntil !== 'number' ||
        typeof m.now !== 'number'
      ) {
        return null;
      }
      return {
        key,
        from: m.from as Transition['from'],
        to: m.to as Transition['to'],
        generation: m.generation,
        openUntil: m.openUntil,
        now: m.now,
        ...(typeof m.override === 'string' && OVERRIDES.has(m.override)
          ? { override: m.override === '' ? null : (m.override as Override) }
          : {}),
      };
    } catch {
      return null;
    }
  }

  #update(operation: string, raw: unknown[], name: string, policy: BreakerPolicy): UpdateResult {
    const reply = new Reply(operation, raw);
    if (reply.string() !== 'update') throw malformed(operation, raw);
    this.#corrupt(name, reply.number());
    const stale = reply.number() === 1;
    const snapshot = reply.snapshot(policy);
    const transition = reply.transition();
    return reply.number() === 1
      ? { snapshot, transition, stale, belowQuorum: true }
      : { snapshot, transition, stale };
  }

  #corrupt(name: string, flag: number): void {
    if (flag !== 1) return;
    const key = breakerKey(this.#prefix, name);
    if (this.#onCorruptRecord !== null) this.#onCorruptRecord(name);
    if (this.#logger !== null) {
      this.#logger.warn({ breaker: name, key }, 'circuit breaker record was corrupt or foreign; reset it');
    } else if (this.#onCorruptRecord === null) {
      process.emitWarning(
        `circuitry: the Redis record of breaker ${JSON.stringify(name.slice(0, 200))} (${key.slice(0, 200)}) was corrupt or foreign and was reset`,
        'CircuitryCorruptRecordWarning',
      );
    }
  }

  /**
   * Runs one operation: FCALL of the library's function, loading the library when the server does
   * not have it (a new server, a restart without persistence, a new cluster node). A server without
   * functions (before Redis 7) or an ACL that refuses them switches this store to EVALSHA for good,
   * falling back to EVAL (which also loads the script) when the server lacks the script.
   */
  async #run(
    script: LuaScript,
    name: string,
    policy: BreakerPolicy,
    extra: readonly (string | number)[],
    secondKey?: string,
  ): Promise<unknown[]> {
    const key = breakerKey(this.#prefix, name);
    const keys = secondKey === undefined ? [key] : [key, secondKey];
    const args = [this.#channel, policyText(policy), this.#timeOffsetMs?.() ?? 0, ...extra];
    const reply = await this.#call(script, keys, args);
    if (!Array.isArray(reply)) throw malformed(script.name, reply);
    return reply as unknown[];
  }

  /** A script that records `batch` (record.lua, carry.lua). */
  #runRecord(
    script: LuaScript,
    name: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
  ): Promise<unknown[]> {
    return this.#run(script, name, policy, recordArgs(batch));
  }

  /**
   * Marks `reporter` active for `ttlMs` of the server's time and answers how many reporters are
   * active now, itself included (`Store.heartbeat`, for a quorum): one script on one sorted set
   * for the whole prefix.
   */
  async heartbeat(reporter: string, ttlMs: number): Promise<number> {
    const reply = await this.#call(
      heartbeatScript,
      [reportersKey(this.#prefix)],
      [reporter, Math.max(1, Math.ceil(ttlMs)), this.#timeOffsetMs?.() ?? 0],
    );
    const active = Number(reply);
    if (!Number.isSafeInteger(active)) throw malformed('heartbeat', reply);
    return active;
  }

  async #call(
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    let reply: unknown;
    if (this.#mode === 'function') {
      const fn = library.functions[script.name]!;
      for (let attempt = 0; ; attempt++) {
        try {
          reply = await this.#client.fcall(fn, keys.length, ...keys, ...args);
          break;
        } catch (error) {
          const text = errorText(error);
          if (attempt < 2 && text.includes('Function not found')) {
            await this.#loadLibrary();
            if (this.#mode === 'function') continue;
          } else if (!/unknown command|NOPERM/i.test(text)) {
            throw error;
          }
          this.#mode = 'script';
          break;
        }
      }
    }
    if (this.#mode === 'script') {
      try {
        reply = await this.#client.evalsha(script.sha1, keys.length, ...keys, ...args);
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
        reply = await this.#client.eval(script.source, keys.length, ...keys, ...args);
      }
    }
    return reply;
  }

  /** FUNCTION LOAD on the server, or on every master of a cluster; one load at a time. */
  #loadLibrary(): Promise<void> {
    if (this.#loading !== null) return this.#loading;
    const client = this.#client;
    const nodes: (Redis | Cluster)[] = 'nodes' in client ? client.nodes('master') : [client];
    if (nodes.length === 0) nodes.push(client);
    const loading = Promise.all(
      nodes.map((node) =>
        node.call('FUNCTION', 'LOAD', library.source).then(
          () => undefined,
          (error: unknown) => {
            const text = errorText(error);
            if (text.includes('already exists')) return;
            if (/unknown command|unknown subcommand|NOPERM/i.test(text)) {
              this.#mode = 'script';
              return;
            }
            throw error;
          },
        ),
      ),
    )
      .then(() => undefined)
      .finally(() => {
        this.#loading = null;
      });
    this.#loading = loading;
    return loading;
  }
}

function parseCursor(cursor: string, nodes: number): [number, string] {
  const match = /^(\d+):(\d+)$/.exec(cursor);
  const node = match === null ? NaN : Number(match[1]);
  if (match === null || node >= nodes)
    throw new TypeError(`Not a cursor from this store's list(): ${cursor}`);
  return [node, match[2]!];
}

/** A writer in a batch id: what `OutcomeBatch.idFloor` promises of (`<writer>.<n>`). */
const WRITER = /^[\w-]{1,64}$/;
/** An opaque id that can name its own writer as it is (after a '.', which no writer above starts with). */
const OPAQUE = /^[\w.-]{1,64}$/;

/**
 * A batch's id as record.lua reads it: its writer, its number and the writer's floor
 * (`OutcomeBatch.idFloor`); an opaque id is a writer of its own, number and floor 0; no id: ''.
 */
function batchIdArgs(batch: OutcomeBatch): [string, number, number] {
  const id = batch.id;
  if (id === undefined) return ['', 0, 0];
  const floor = batch.idFloor;
  if (floor === undefined) {
    const opaque = OPAQUE.test(id) ? id : createHash('sha1').update(id).digest('hex');
    return [`.${opaque}`, 0, 0];
  }
  const dot = id.lastIndexOf('.');
  const writer = id.slice(0, dot);
  const digits = id.slice(dot + 1);
  const n = parseInt(digits, 36);
  if (
    dot < 0 ||
    !WRITER.test(writer) ||
    !/^[0-9a-z]{1,10}$/.test(digits) ||
    !Number.isSafeInteger(floor) ||
    floor < 0 ||
    floor > n
  ) {
    throw new TypeError(
      `OutcomeBatch.idFloor needs an id of the form <writer>.<n> (writer: 1-64 of [A-Za-z0-9_-], n: base 36) and 0 <= idFloor <= n; got id ${JSON.stringify(id)}, idFloor ${String(floor)}`,
    );
  }
  return [writer, n, floor];
}

/**
 * What a breaker with no record answers (the scripts' `none`, or a plain `EXISTS` of 0): the
 * record's half is a fresh record's snapshot at generation 0 (nothing written), `stale` when the
 * outcome was admitted under a record that is gone; the acquire admits, closed, under generation 0.
 */
function noRecordCarry(policy: BreakerPolicy, now: number, stale: boolean): RecordedAcquire {
  return { update: noRecordUpdate(policy, now, stale), acquire: closedAdmission(NO_RECORD, now, 0, 0) };
}

/** The record's half of `noRecordCarry`, for `record` alone. */
function noRecordUpdate(policy: BreakerPolicy, now: number, stale: boolean): UpdateResult {
  return { snapshot: snapshotFrom(closedFields(now), policy), transition: null, stale };
}

/** A batch admitted under a record (not under generation 0): stale to a breaker that has none. */
function admittedUnderGone(batch: OutcomeBatch): boolean {
  return batch.generation !== NO_RECORD;
}

/**
 * carry.lua's short reply, for the two paths a healthy tenant's call takes (what the two full
 * replies would say, the rest implied):
 * - `{ 'closed', successes, failures, slow, ignored, consecutiveFailures, generation, closedAt,
 *   now, activeSlots }`: the record counted in a closed breaker with no override, at its
 *   generation, without tripping it; the acquire admits under that generation;
 * - `{ 'none', stale, now }`: a success found no record (no run to reset); the acquire admits
 *   under generation 0 (no record), and the record's answer is a fresh record's at generation 0.
 */
function shortCarry(raw: unknown[], policy: BreakerPolicy): RecordedAcquire {
  const reply = new Reply('carry', raw);
  const kind = reply.string();
  if (kind === 'none' && raw.length === 3) {
    const flag = reply.number();
    if (flag !== 0 && flag !== 1) throw malformed('carry', raw);
    return noRecordCarry(policy, reply.number(), flag === 1);
  }
  if (kind !== 'closed' || raw.length !== 10) throw malformed('carry', raw);
  const successes = reply.number();
  const failures = reply.number();
  const slow = reply.number();
  const ignored = reply.number();
  const consecutiveFailures = reply.number();
  const generation = reply.number();
  const closedAt = reply.number();
  const now = reply.number();
  const activeSlots = reply.number();
  const counted = {
    generation,
    successes,
    failures,
    slow,
    ignored,
    consecutiveFailures,
    closedAt,
    activeSlots,
  };
  return {
    update: { snapshot: snapshotFrom(closedFields(now, counted), policy), transition: null, stale: false },
    acquire: closedAdmission(generation, now, closedAt, consecutiveFailures),
  };
}

/**
 * The arguments of record.lua and carry.lua after the policy (op-record.lua): the batch's numbers
 * and id in one string joined by `:` (none of them can hold one: the id's parts and the reporter
 * are of `[A-Za-z0-9_.-]`), then the slots given back and the probes. One argument instead of 15:
 * each costs the client and the server on every call.
 */
function recordArgs(batch: OutcomeBatch): (string | number)[] {
  const [writer, n, floor] = batchIdArgs(batch);
  const throttle = batch.throttleRate === undefined ? '' : throttleMillionths(batch.throttleRate);
  const args: (string | number)[] = [
    `${batch.generation}:${batch.successes}:${batch.failures}:${batch.trailingFailures}:${batch.slow}:${batch.ignored}:${batch.trip === true ? 1 : 0}:${batch.random}:${batch.jitterMs ?? 0}:${writer}:${n}:${floor}:${batch.reporter ?? ''}:${batch.quorum ?? 1}:${throttle}`,
  ];
  const slots = batch.slots ?? [];
  args.push(slots.length, ...slots);
  for (const probe of batch.probes) args.push(probe.lease, probe.outcome);
  return args;
}
