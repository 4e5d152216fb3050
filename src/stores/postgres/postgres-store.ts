import { createHash } from 'node:crypto';

import type { Pool } from 'pg';

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
import { MAX_REASON_LENGTH, resetsOnly, throttleMillionths } from '../../core/reducer.js';
import { SCHEMA_VERSION } from '../../core/types.js';
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
import type { SchemaObjects, TableName } from './names.js';
import { DEFAULT_TABLE, keyOf, likePrefix, objectsOf, parseTableName } from './names.js';
import { listen } from './listener.js';
import { heartbeatSql, peekSql } from './schema.js';
import { policyFields } from '../policy-fields.js';
import type { RecordExaminer, RecordReport } from '../record-report.js';

/** Options of `PostgresStore`. */
export interface PostgresStoreOptions {
  /**
   * A `pg.Pool` you created. The store runs one statement per operation on it and never closes
   * it; `subscribe` opens a dedicated connection from the pool's connection options.
   */
  readonly pool: Pool;
  /**
   * The table (`name`, resolved through `search_path`, or `schema.name`) that
   * `createBreakerSchema` created. @defaultValue 'circuitry_breakers'
   */
  readonly table?: string;
  /** Told when a corrupt or foreign row is reset. @defaultValue none (a process warning) */
  readonly logger?: Logger;
  /** Called with the breaker name when a corrupt or foreign row is reset. */
  readonly onCorruptRecord?: (name: string) => void;
  /**
   * One write in this many also deletes up to 100 expired rows (and 500 expired batch ids), in
   * the same statement. @defaultValue 256
   */
  readonly gcEvery?: number;
  /**
   * For tests only: milliseconds added to the Postgres server's clock, read on every call, so a
   * test can move the store's time forward. @defaultValue none
   */
  readonly timeOffsetMs?: () => number;
}

const PAGE_SIZE = 100;
/** SQLSTATE of a call to a function that does not exist. */
const UNDEFINED_FUNCTION = '42883';

/** The policy as the functions' `kind_` and `p_` (schema.ts). */
const argsOf = policyFields;

/** A row of the functions' REPLY_COLUMNS, as node-postgres returns it (bigint as text). */
interface ReplyRow {
  o_corrupt: boolean | null;
  o_stale: boolean | null;
  o_now: string | null;
  o_admitted: boolean | null;
  o_reason: string | null;
  o_retry_after: string | null;
  o_lease: string | null;
  o_state: string | null;
  o_override: string | null;
  o_generation: string | null;
  o_open_until: string | null;
  o_successes: string | null;
  o_failures: string | null;
  o_slow: string | null;
  o_ignored: string | null;
  o_consecutive: string | null;
  o_active_probes: number | null;
  o_probe_successes: number | null;
  o_reopens: number | null;
  o_override_until: string | number | null;
  o_override_reason: string | null;
  o_closed_at: string | number | null;
  o_slot: string | null;
  o_active_slots: number | null;
  o_below: boolean | null;
  o_throttle_rate: number | null;
  o_throttle_at: string | number | null;
  o_from: string | null;
  o_to: string | null;
  o_transition_generation: string | null;
}

/** A row of `peekSql` (bigint as text). */
interface PeekRow {
  now_: string;
  row_: string | null;
}

/** What `#peek` read. */
interface Peek {
  readonly generation: number;
  readonly state: BreakerState;
  readonly override: Override | null;
  readonly now: number;
  readonly closedAt: number;
}

const STATES = new Set<string>(['closed', 'open', 'half-open']);
const OVERRIDES = new Set<string>(['forced-open', 'forced-closed', 'metrics-only']);
const CIRCUIT_STATES = new Set<string>(['closed', 'open', 'half-open', 'forced-open', 'forced-closed']);

/** Reads a reply row field by field, failing on the first one of the wrong shape. */
class Reply {
  constructor(
    readonly operation: string,
    readonly row: ReplyRow,
  ) {}

  fail(): StoreError {
    const shown = JSON.stringify(this.row).slice(0, 300);
    return new StoreError(`Postgres ${this.operation} returned a row of the wrong shape: ${shown}`);
  }

  number(value: string | number | null): number {
    const n = typeof value === 'number' ? value : value === null ? NaN : Number(value);
    if (!Number.isSafeInteger(n)) throw this.fail();
    return n;
  }

  state(): BreakerState {
    if (this.row.o_state === null || !STATES.has(this.row.o_state)) throw this.fail();
    return this.row.o_state as BreakerState;
  }

  override(): Override | null {
    const value = this.row.o_override;
    if (value === null) return null;
    if (!OVERRIDES.has(value)) throw this.fail();
    return value as Override;
  }

  transition(): Transition | null {
    const { o_from: from, o_to: to } = this.row;
    if (from === null) return null;
    if (!CIRCUIT_STATES.has(from) || to === null || !CIRCUIT_STATES.has(to)) throw this.fail();
    return {
      from: from as Transition['from'],
      to: to as Transition['to'],
      generation: this.number(this.row.o_transition_generation),
    };
  }

  snapshot(policy: BreakerPolicy): Snapshot {
    const r = this.row;
    return snapshotFrom(
      {
        state: this.state(),
        override: this.override(),
        generation: this.number(r.o_generation),
        openUntil: this.number(r.o_open_until),
        successes: this.number(r.o_successes),
        failures: this.number(r.o_failures),
        slow: this.number(r.o_slow),
        ignored: this.number(r.o_ignored),
        consecutiveFailures: this.number(r.o_consecutive),
        activeProbes: this.number(r.o_active_probes),
        probeSuccesses: this.number(r.o_probe_successes),
        reopens: this.number(r.o_reopens),
        now: this.number(r.o_now),
        overrideUntil: r.o_override_until === null ? 0 : this.number(r.o_override_until),
        overrideReason: r.o_override_reason,
        closedAt: r.o_closed_at === null ? 0 : this.number(r.o_closed_at),
        activeSlots: r.o_active_slots === null ? 0 : this.number(r.o_active_slots),
      },
      policy,
    );
  }
}

/**
 * Breaker state in a Postgres table, one row per breaker, shared by every process that uses the
 * same database and table. Each operation is one round trip: one PL/pgSQL function (created by
 * `createBreakerSchema`) that locks the row, runs the reducer's transition on the server's clock
 * and returns the result, so workers with skewed clocks agree. Short transactions and row locks,
 * never SERIALIZABLE. Transitions are sent with `pg_notify` and heard by `subscribe`.
 */
export class PostgresStore implements Store, RecordExaminer {
  /** First contact 5 s (a pool connects on first use); per call 200–3,000 ms, adaptive. */
  readonly timing: StoreTiming = Object.freeze({
    connectTimeoutMs: 5_000,
    minCallTimeoutMs: 200,
    maxCallTimeoutMs: 3_000,
  });
  readonly #pool: Pool;
  readonly #name: TableName;
  readonly #objects: SchemaObjects;
  readonly #sql: {
    readonly acquire: string;
    readonly record: string;
    readonly inspect: string;
    readonly force: string;
    readonly reset: string;
    readonly list: string;
    readonly nameOfKey: string;
    readonly peek: string;
    readonly heartbeat: string;
  };
  /** The prepared statement's name of each statement text (see the constructor). */
  readonly #names = new Map<string, string>();
  readonly #logger: Logger | null;
  readonly #onCorruptRecord: ((name: string) => void) | null;
  readonly #timeOffsetMs: (() => number) | null;
  readonly #gcEvery: number;
  #writes = 0;
  /** Enforces `maxConcurrent` (see `Store.limitsConcurrency`): slots in the breaker's row. */
  readonly limitsConcurrency = true;

  constructor(options: PostgresStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalid('PostgresStore options', 'an object with a `pool`', options);
    }
    const pool = options.pool as unknown;
    if (
      typeof pool !== 'object' ||
      pool === null ||
      typeof (pool as Pool).query !== 'function' ||
      typeof (pool as Pool).connect !== 'function'
    ) {
      throw invalid('pool', 'a pg.Pool', pool);
    }
    const gcEvery = options.gcEvery ?? 256;
    if (!Number.isSafeInteger(gcEvery) || gcEvery < 1)
      throw invalid('gcEvery', 'a positive integer', gcEvery);
    this.#pool = options.pool;
    this.#name = parseTableName(options.table ?? DEFAULT_TABLE);
    this.#objects = objectsOf(this.#name);
    const o = this.#objects;
    const leading = '$1, $2, $3, $4';
    this.#sql = {
      acquire: `SELECT * FROM ${o.acquire}(${leading}, $5)`,
      record: `SELECT * FROM ${o.record}(${leading}, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
      inspect: `SELECT * FROM ${o.inspect}(${leading})`,
      force: `SELECT * FROM ${o.force}(${leading}, $5, $6, $7, $8, $9)`,
      reset: `SELECT * FROM ${o.reset}(${leading}, $5)`,
      list:
        `SELECT key, name FROM ${o.table} WHERE key LIKE $1 ESCAPE '\\' AND ($2::text IS NULL OR key > $2) ` +
        `AND (expires_at IS NULL OR expires_at > floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint + $3) ` +
        `ORDER BY key LIMIT ${PAGE_SIZE}`,
      nameOfKey: `SELECT name FROM ${o.table} WHERE key = $1`,
      peek: peekSql(o.table),
      heartbeat: heartbeatSql(o.reporters),
    };
    // Named (prepared once per connection): parsing and planning a statement per call costs
    // more than running it. One name per text, so two tables never share a prepared statement.
    for (const [operation, text] of Object.entries(this.#sql)) {
      this.#names.set(
        text,
        `circuitry_${operation}_${createHash('sha256').update(text).digest('hex').slice(0, 16)}`,
      );
    }
    this.#gcEvery = gcEvery;
    this.#logger = options.logger ?? null;
    this.#onCorruptRecord = options.onCorruptRecord ?? null;
    this.#timeOffsetMs = options.timeOffsetMs ?? null;
  }

  async acquire(name: string, policy: BreakerPolicy): Promise<AcquireResult> {
    return this.#acquire(name, policy, this.#gc());
  }

  /**
   * `record` then `acquire`. A success with nothing to reset and a call to admit (the healthy
   * tenant's steady state: no row) are both answered by one plain read; anything else is the two
   * statements, one after the other.
   */
  async recordThenAcquire(
    name: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
  ): Promise<RecordedAcquire> {
    const gc = this.#gc();
    let peeked = false;
    if (!gc && policy.maxConcurrent === 0 && resetsOnly(policy, batch) && (batch.slots?.length ?? 0) === 0) {
      const peek = await this.#peek(name);
      if (peek !== null && peek.generation === 0) {
        const snapshot = snapshotFrom(closedFields(peek.now), policy);
        return {
          update: { snapshot, transition: null, stale: false },
          acquire: closedAdmission(peek.generation, peek.now, peek.closedAt),
        };
      }
      peeked = true;
    }
    const update = await this.#record(name, policy, batch, peeked);
    return { update, acquire: await this.#acquire(name, policy, gc) };
  }

  async #acquire(name: string, policy: BreakerPolicy, gc: boolean): Promise<AcquireResult> {
    if (!gc && policy.maxConcurrent === 0) {
      // A closed breaker without an override (or none at all) admits without a write: a plain
      // read answers it; anything else (a slot to take too) asks the function, which decides
      // under the row's lock.
      const peek = await this.#peek(name);
      if (peek !== null && (peek.generation === 0 || (peek.state === 'closed' && peek.override === null))) {
        return closedAdmission(peek.generation, peek.now, peek.closedAt);
      }
    }
    const reply = await this.#run('acquire', this.#sql.acquire, name, policy, [gc]);
    const r = reply.row;
    const admitted = r.o_admitted === true;
    const reason = r.o_reason;
    if (
      !admitted &&
      reason !== 'open' &&
      reason !== 'half-open-full' &&
      reason !== 'forced-open' &&
      reason !== 'concurrency-limit'
    ) {
      throw reply.fail();
    }
    return {
      admitted,
      reason: admitted ? null : (reason as AcquireResult['reason']),
      retryAfterMs: reply.number(r.o_retry_after),
      generation: reply.number(r.o_generation),
      lease: r.o_lease,
      slot: r.o_slot,
      state: reply.state(),
      override: reply.override(),
      openUntil: reply.number(r.o_open_until),
      now: reply.number(r.o_now),
      transition: reply.transition(),
      closedAt: r.o_closed_at === null ? 0 : reply.number(r.o_closed_at),
    };
  }

  record(name: string, policy: BreakerPolicy, batch: OutcomeBatch): Promise<UpdateResult> {
    return this.#record(name, policy, batch, false);
  }

  /** `peeked`: the caller read the row already and found one (the plain read is left out). */
  async #record(
    name: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
    peeked: boolean,
  ): Promise<UpdateResult> {
    if (!peeked && resetsOnly(policy, batch) && (batch.slots === undefined || batch.slots.length === 0)) {
      // A success with no row to reset writes nothing: a plain read says so (the function would
      // read the same, at twice the cost).
      const peek = await this.#peek(name);
      if (peek !== null && peek.generation === 0) {
        const snapshot = snapshotFrom(closedFields(peek.now), policy);
        return { snapshot, transition: null, stale: false };
      }
    }
    const reply = await this.#run('record', this.#sql.record, name, policy, [
      this.#gc(),
      batch.generation,
      batch.successes,
      batch.failures,
      batch.trailingFailures,
      batch.slow,
      batch.ignored,
      batch.trip === true,
      batch.random,
      batch.jitterMs ?? 0,
      batch.id ?? null,
      batch.probes.map((p) => p.lease),
      batch.probes.map((p) => p.outcome),
      batch.slots ?? [],
      batch.reporter ?? null,
      batch.quorum ?? 1,
      batch.throttleRate === undefined ? null : throttleMillionths(batch.throttleRate),
    ]);
    return this.#update(reply, policy);
  }

  /**
   * The breaker's snapshot, or null when there is no row or none this version can read (to a
   * breaker that is no record: its next write replaces it). Writes nothing.
   */
  async inspect(name: string, policy: BreakerPolicy): Promise<Snapshot | null> {
    const report = await this.examine(name, policy);
    return report.kind === 'record' ? report.snapshot : null;
  }

  /** What the row of `name` holds (`RecordExaminer`): one read-only statement; a spoiled row is left as it is. */
  async examine(name: string, policy: BreakerPolicy): Promise<RecordReport> {
    const reply = await this.#run('inspect', this.#sql.inspect, name, policy, [], true);
    if (reply === null) return { kind: 'none' };
    if (reply.row.o_corrupt === true) {
      return {
        kind: 'corrupt',
        reason: `the row does not hold a breaker record of schema ${SCHEMA_VERSION}`,
      };
    }
    const snapshot = reply.snapshot(policy);
    const { o_throttle_rate: rate, o_throttle_at: at } = reply.row;
    const reportedAt = at === null ? 0 : Number(at);
    if (rate === null || reportedAt <= 0 || !Number.isSafeInteger(reportedAt))
      return { kind: 'record', snapshot };
    return {
      kind: 'record',
      snapshot: { ...snapshot, throttle: { rate: Number(rate) / 1_000_000, reportedAt } },
    };
  }

  async force(
    name: string,
    policy: BreakerPolicy,
    override: Override | null,
    options: ForceOptions = {},
  ): Promise<UpdateResult> {
    const reply = await this.#run('force', this.#sql.force, name, policy, [
      this.#gc(),
      override,
      Math.ceil(options.forMs ?? 0),
      options.reason?.slice(0, MAX_REASON_LENGTH) ?? '',
      options.yieldToOperator === true,
    ]);
    return this.#update(reply, policy);
  }

  /**
   * Starts the breaker afresh, keeping its override (`Store.reset`); never creates a row. Needs
   * the `<table>_reset` function: a schema created by an older version gets it from running
   * `createBreakerSchema` again (idempotent).
   */
  async reset(name: string, policy: BreakerPolicy): Promise<UpdateResult> {
    let reply: Reply;
    try {
      reply = await this.#run('reset', this.#sql.reset, name, policy, [this.#gc()]);
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code !== UNDEFINED_FUNCTION) throw error;
      throw new StoreError(
        `Postgres has no ${this.#objects.reset} function (a schema made by an older circuitry): run createBreakerSchema() again, or the SQL in docs/postgres.md, to add it`,
        { cause: error },
      );
    }
    return this.#update(reply, policy);
  }

  /**
   * Breaker names starting with `prefix`, a page at a time, in key order (keyset pagination on
   * the primary key: each page is one index range scan). Expired rows not yet deleted are skipped.
   */
  async list(prefix: string, cursor: string | null = null): Promise<ListPage> {
    const { rows } = await this.#pool.query<{ key: string; name: string }>(this.#sql.list, [
      likePrefix(prefix),
      cursor,
      this.#timeOffsetMs?.() ?? 0,
    ]);
    const keys = rows.filter((row) => row.name.startsWith(prefix)).map((row) => row.name);
    return { keys, cursor: rows.length < PAGE_SIZE ? null : rows[rows.length - 1]!.key };
  }

  /**
   * Hears every transition any process makes: `LISTEN` on a dedicated connection (not one from
   * the pool: a pooled connection goes back to the pool, and its LISTEN with it), made from the
   * pool's connection options. Resolves once listening, or once the first attempt failed or took
   * longer than the first-contact bound; a connection that fails or drops is made again with
   * backoff (up to 30 s apart), and `options.onResync` is called when it is back (NOTIFY is not
   * kept for a listener that was away). The returned function (or `options.signal`) closes the
   * connection at once, even when the server is unreachable.
   */
  async subscribe(
    listener: (message: StateChangeMessage) => void,
    options: SubscribeOptions = {},
  ): Promise<() => Promise<void>> {
    return listen({
      pool: this.#pool,
      channelSql: `SELECT ${this.#objects.channelFunction}() AS channel`,
      connectTimeoutMs: this.timing.connectTimeoutMs,
      onPayload: (payload) => this.#deliver(payload, listener),
      ...(options.onResync === undefined ? {} : { onResync: options.onResync }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  }

  #deliver(payload: string, listener: (message: StateChangeMessage) => void): void {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(payload) as Record<string, unknown>;
    } catch {
      return;
    }
    if (
      typeof m.key !== 'string' ||
      typeof m.from !== 'string' ||
      !CIRCUIT_STATES.has(m.from) ||
      typeof m.to !== 'string' ||
      !CIRCUIT_STATES.has(m.to) ||
      typeof m.generation !== 'number' ||
      typeof m.openUntil !== 'number' ||
      typeof m.now !== 'number'
    ) {
      return;
    }
    const message = (key: string): StateChangeMessage => ({
      key,
      from: m.from as Transition['from'],
      to: m.to as Transition['to'],
      generation: m.generation as number,
      openUntil: m.openUntil as number,
      now: m.now as number,
      ...(typeof m.override === 'string' && (m.override === '' || OVERRIDES.has(m.override))
        ? { override: m.override === '' ? null : (m.override as Override) }
        : {}),
    });
    if (m.hashed !== true) {
      listener(message(m.key));
      return;
    }
    // A name too long for a key (and for a NOTIFY payload) is looked up by its key.
    this.#pool.query<{ name: string }>(this.#sql.nameOfKey, [m.key]).then(
      ({ rows }) => {
        if (rows[0] !== undefined) listener(message(rows[0].name));
      },
      () => undefined, // as a push lost: breakers re-read on their own schedule
    );
  }

  /** Every `gcEvery`th write asks the function for a bounded pass over expired rows. */
  /**
   * Marks `reporter` active for `ttlMs` and answers how many reporters are active now
   * (`Store.heartbeat`, for a quorum): one statement on the `<table>_reporters` table, which also
   * drops reporters gone for a minute.
   */
  async heartbeat(reporter: string, ttlMs: number): Promise<number> {
    const sql = this.#sql.heartbeat;
    const { rows } = await this.#pool.query<{ active: string | number }>({
      name: this.#names.get(sql),
      text: sql,
      values: [reporter, Math.max(1, Math.ceil(ttlMs)), this.#timeOffsetMs?.() ?? 0],
    });
    const active = Number(rows[0]?.active);
    if (!Number.isSafeInteger(active)) throw new StoreError('Postgres heartbeat returned no count');
    return active;
  }

  /**
   * What the plain read of `name`'s row says: `generation` 0 when there is no row, or an expired
   * one (both: no record); null when the row is one the functions would repair (they report it).
   */
  async #peek(name: string): Promise<Peek | null> {
    if (typeof name !== 'string' || !isWellFormed(name)) {
      throw new StoreError(`PostgresStore cannot store a breaker name that is not well-formed UTF-16`);
    }
    const sql = this.#sql.peek;
    const { rows } = await this.#pool.query<PeekRow>({
      name: this.#names.get(sql),
      text: sql,
      values: [keyOf(name), this.#timeOffsetMs?.() ?? 0],
    });
    const row = rows[0];
    if (row === undefined) throw new StoreError('Postgres peek returned no row');
    const now = Number(row.now_);
    if (!Number.isSafeInteger(now)) throw new StoreError('Postgres peek returned no time');
    const fields = row.row_;
    if (fields === null) return { generation: 0, state: 'closed', override: null, now, closedAt: 0 };
    const [state, override, generation, closedAt] = fields.split(' ');
    const g = Number(generation);
    const c = Number(closedAt);
    if (!STATES.has(state!) || !Number.isSafeInteger(g) || !Number.isSafeInteger(c)) return null;
    if (override !== '-' && !OVERRIDES.has(override!)) return null;
    return {
      generation: g,
      state: state as BreakerState,
      override: override === '-' ? null : (override as Override),
      now,
      closedAt: c,
    };
  }

  #gc(): boolean {
    this.#writes += 1;
    if (this.#writes < this.#gcEvery) return false;
    this.#writes = 0;
    return true;
  }

  #update(reply: Reply, policy: BreakerPolicy): UpdateResult {
    return {
      snapshot: reply.snapshot(policy),
      transition: reply.transition(),
      stale: reply.row.o_stale === true,
      ...(reply.row.o_below === true ? { belowQuorum: true } : {}),
    };
  }

  async #run(
    operation: string,
    sql: string,
    name: string,
    policy: BreakerPolicy,
    extra: readonly unknown[],
    none: true,
  ): Promise<Reply | null>;
  async #run(
    operation: string,
    sql: string,
    name: string,
    policy: BreakerPolicy,
    extra: readonly unknown[],
  ): Promise<Reply>;
  async #run(
    operation: string,
    sql: string,
    name: string,
    policy: BreakerPolicy,
    extra: readonly unknown[],
    none = false,
  ): Promise<Reply | null> {
    if (typeof name !== 'string' || !isWellFormed(name)) {
      // Postgres text is UTF-8: a lone surrogate would become U+FFFD and two names would collide.
      throw new StoreError(`PostgresStore cannot store a breaker name that is not well-formed UTF-16`);
    }
    const [kind, p] = argsOf(policy);
    const { rows } = await this.#pool.query<ReplyRow>({
      name: this.#names.get(sql),
      text: sql,
      values: [name, kind, p, this.#timeOffsetMs?.() ?? 0, ...extra],
    });
    const row = rows[0];
    if (row === undefined) {
      if (none) return null;
      throw new StoreError(`Postgres ${operation} returned no row`);
    }
    const reply = new Reply(operation, row);
    // A read reports what it found in its answer (examine), and has repaired nothing.
    if (row.o_corrupt === true && operation !== 'inspect') this.#corrupt(name);
    return reply;
  }

  #corrupt(name: string): void {
    if (this.#onCorruptRecord !== null) this.#onCorruptRecord(name);
    const table = this.#objects.table;
    if (this.#logger !== null) {
      this.#logger.warn({ breaker: name, table }, 'circuit breaker record was corrupt or foreign; reset it');
    } else if (this.#onCorruptRecord === null) {
      process.emitWarning(
        `circuitry: the Postgres row of breaker ${JSON.stringify(name.slice(0, 200))} in ${table} was corrupt or foreign and was reset`,
        'CircuitryCorruptRecordWarning',
      );
    }
  }
}

const SURROGATE = /[\uD800-\uDFFF]/;

function isWellFormed(name: string): boolean {
  if (!SURROGATE.test(name)) return true;
  return Buffer.from(name, 'utf8').toString('utf8') === name;
}
