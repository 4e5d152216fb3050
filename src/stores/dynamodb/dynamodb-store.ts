import { createHash, randomUUID } from 'node:crypto';

import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DescribeTimeToLiveCommand,
  GetItemCommand,
  PutItemCommand,
  ResourceInUseException,
  ScanCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import type { AttributeValue, DynamoDBClient } from '@aws-sdk/client-dynamodb';

import type { Clock } from '../../core/clock.js';
import { systemClock } from '../../core/clock.js';
import { outcomesCanTrip } from '../../core/policy.js';
import { windowCounts } from '../../core/window.js';
import * as reducer from '../../core/reducer.js';
import type {
  AcquireResult,
  BreakerPolicy,
  BreakerRecord,
  ForceOptions,
  OutcomeBatch,
  Override,
  Snapshot,
  UpdateResult,
} from '../../core/types.js';
import { StoreError } from '../../errors.js';
import type { Logger } from '../../options.js';
import { invalid } from '../../options.js';
import type { ListPage, RecordedAcquire, Store, StoreTiming } from '../../store.js';
import type { RecordExaminer, RecordReport } from '../record-report.js';

/** Options of `DynamoDBStore`. */
export interface DynamoDBStoreOptions {
  /** A `DynamoDBClient` you created; the store sends commands on it and never destroys it. */
  readonly client: DynamoDBClient;
  /** A table made by `createBreakerTable` (partition key `pk`, a string). */
  readonly tableName: string;
  /**
   * Where time comes from: DynamoDB has no server clock. Conditional writes keep every change
   * atomic whatever the clocks say; a process whose clock is off by `s` sees open periods end `s`
   * early or late. @defaultValue the system clock
   */
  readonly clock?: Clock;
  /** Told when a corrupt or foreign item is reset. @defaultValue none (a process warning) */
  readonly logger?: Logger;
  /** Called with the breaker name when a corrupt or foreign item is reset. */
  readonly onCorruptRecord?: (name: string) => void;
  /**
   * Attempts of a conditional write that loses races to other writers before giving up with a
   * `StoreError`. @defaultValue 64
   */
  readonly maxAttempts?: number;
}

interface Group {
  readonly policy: BreakerPolicy;
  /** The batches merged into this write, each counted unless its id was seen (a re-send). */
  readonly members: OutcomeBatch[];
  /**
   * Members (by place) that counted nothing: re-sends (their id seen before, or earlier in the
   * group), and members stale by generation.
   */
  readonly stale: Set<number>;
  result: Promise<UpdateResult>;
}

/**
 * The group's answer as its member at `place` gets it: stale as that member was; the transition
 * the write made (an open, a lapsed override) goes to the first member only.
 */
function answerFor(group: Group, place: number, result: UpdateResult): UpdateResult {
  const stale = group.stale.has(place);
  if (place === 0) return result.stale === stale ? result : { ...result, stale };
  return { ...result, stale, transition: null };
}

/**
 * Batch ids are remembered in the item (attribute `ids`, a string set of `<epoch>:<id>`, an epoch
 * being ID_EPOCH_MS of the store's clock), so a batch re-sent after a write whose reply was lost is
 * counted once. An id is recognised during its epoch and the next: at least ID_EPOCH_MS, at most
 * twice that. A breaker's set holds at most MAX_IDS entries (older ones go first past it).
 */
const ID_EPOCH_MS = 30_000;
const MAX_IDS = 1_000;
const KEPT_IDS = 500;

/** Whether `id` is among the ids of `entries` that are still recognised at `now`. */
function seenAt(entries: ReadonlySet<string>, id: string, now: number): boolean {
  const epoch = Math.floor(now / ID_EPOCH_MS);
  return entries.has(`${epoch}:${id}`) || entries.has(`${epoch - 1}:${id}`);
}

/** The id entries to keep at `now` with `added` (recognised ones only, newest first past MAX_IDS). */
function keptIds(entries: ReadonlySet<string>, added: readonly string[], now: number): string[] {
  const epoch = Math.floor(now / ID_EPOCH_MS);
  const kept = [...entries].filter((entry) => Number(entry.slice(0, entry.indexOf(':'))) >= epoch - 1);
  const all = [...new Set([...kept, ...added.map((id) => `${epoch}:${id}`)])];
  if (all.length < MAX_IDS) return all;
  all.sort((a, b) => Number(a.slice(0, a.indexOf(':'))) - Number(b.slice(0, b.indexOf(':'))));
  return all.slice(all.length - KEPT_IDS);
}

/** Seconds past what a record must remember before DynamoDB's TTL may delete it. */
const TTL_MARGIN_S = 3_600;
const PAGE_SIZE = 100;

interface Loaded {
  readonly record: BreakerRecord;
  /** The batch id entries the item holds (see `ID_EPOCH_MS`). */
  readonly ids: ReadonlySet<string>;
  /** Whether there is an item, and its `v` attribute as stored (undefined when missing). */
  readonly exists: boolean;
  readonly rawVersion: AttributeValue | undefined;
  /** The version to write next. */
  readonly nextVersion: number;
  readonly corrupt: boolean;
}

/**
 * A count `#count` did not make (its condition failed, or it would trip the policy): the batch goes
 * the general way, starting from `item` when the refusal handed the item back (else a read).
 */
class Refused {
  constructor(readonly item: Record<string, AttributeValue> | null) {}
}

const NOT_TRIED = new Refused(null);

/** Longest name stored as the key itself; longer ones are keyed by their SHA-256 (keys max 2 KB). */
const MAX_PLAIN_KEY_BYTES = 1_000;

/** The partition key for a breaker name: injective, and within DynamoDB's key size. */
/** The item of the active reporters (`heartbeat`): never a breaker's (those start `n:` or `h:`). */
const REPORTERS_KEY = 'r:reporters';

export function itemKey(name: string): string {
  return Buffer.byteLength(name, 'utf8') <= MAX_PLAIN_KEY_BYTES
    ? `n:${name}`
    : `h:${createHash('sha256').update(name, 'utf8').digest('hex')}`;
}

/**
 * Breaker state in a DynamoDB table, one item per breaker: `pk` (`n:` + the breaker name, or `h:` +
 * its SHA-256 when longer than 1,000 bytes: keys are limited to 2 KB), `name`, `rec` (the record
 * as JSON), `v` (a version every write bumps), `ttl` (epoch seconds, for DynamoDB's
 * time-to-live), the window's buckets and totals (see `toItem`, `windowTotals`) and, while a
 * breaker with `maxConcurrent` holds any, `sl` (its concurrency slots: a map of slot id to
 * expiry). Outcomes in a closed breaker that do not trip it are one atomic `UpdateItem`
 * (`#count`); every other operation is a strongly consistent `GetItem`, the reducer, and, only
 * when something changed, one `PutItem` conditional on the version read; a conflict is retried
 * with the fresh item. No lock table, no lock.
 */
export class DynamoDBStore implements Store, RecordExaminer {
  /**
   * First contact 10 s (the SDK resolves credentials and opens TLS on the first request); per
   * call 1,000–5,000 ms, adaptive (a transition is a read and a conditional write, retried on a
   * conflict).
   */
  readonly timing: StoreTiming = Object.freeze({
    connectTimeoutMs: 10_000,
    minCallTimeoutMs: 1_000,
    maxCallTimeoutMs: 5_000,
  });
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #clock: Clock;
  readonly #logger: Logger | null;
  readonly #onCorruptRecord: ((name: string) => void) | null;
  readonly #maxAttempts: number;
  /**
   * Per breaker: the group waiting for the write in flight to finish, and this process's write in
   * flight (a count or a group, set from the moment a group is made: see `#inFlight`).
   */
  readonly #waiting = new Map<string, Group>();
  readonly #writing = new Map<string, Promise<void>>();
  /** Enforces `maxConcurrent` (see `Store.limitsConcurrency`): slots in the breaker's item. */
  readonly limitsConcurrency = true;

  constructor(options: DynamoDBStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalid('DynamoDBStore options', 'an object with `client` and `tableName`', options);
    }
    if (typeof (options.client as { send?: unknown } | undefined)?.send !== 'function') {
      throw invalid('client', 'a DynamoDBClient', options.client);
    }
    if (typeof options.tableName !== 'string' || !/^[\w.-]{3,255}$/.test(options.tableName)) {
      throw invalid('tableName', 'a DynamoDB table name (3-255 of a-z, A-Z, 0-9, _ - .)', options.tableName);
    }
    const maxAttempts = options.maxAttempts ?? 64;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1)
      throw invalid('maxAttempts', 'an integer >= 1', maxAttempts);
    this.#client = options.client;
    this.#table = options.tableName;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? null;
    this.#onCorruptRecord = options.onCorruptRecord ?? null;
    this.#maxAttempts = maxAttempts;
  }

  /**
   * Admits or rejects. A breaker without an item is closed and admitted under generation 0
   * (`NO_RECORD`) without a write: a tenant that never failed costs no item. With a concurrency
   * limit the slot is written (with the item, if there is none), conditional on the version read.
   */
  acquire(name: string, policy: BreakerPolicy): Promise<AcquireResult> {
    const limited = policy.maxConcurrent > 0;
    return this.#change(
      name,
      policy,
      (record, now, exists) => {
        const result = reducer.acquire(
          record,
          policy,
          now,
          record.state === 'closed' && !limited ? '' : `${record.generation}-${randomUUID()}`,
        );
        return exists || limited ? result : { ...result, generation: reducer.NO_RECORD };
      },
      { create: limited },
    );
  }

  /**
   * `record` then `acquire`. A success with nothing to reset and a call to admit, for a breaker
   * with no item (the healthy tenant's steady state), are both answered by one `GetItem`; anything
   * else is the two operations, one after the other.
   */
  async recordThenAcquire(
    name: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
  ): Promise<RecordedAcquire> {
    if (
      policy.maxConcurrent === 0 &&
      reducer.resetsOnly(policy, batch) &&
      (batch.slots === undefined || batch.slots.length === 0)
    ) {
      const loaded = await this.#load(name);
      if (!loaded.exists) {
        const now = this.#clock.now();
        const reset = reducer.resetRun(loaded.record, policy, now, batch);
        const admitted = reducer.acquire(loaded.record, policy, now, '');
        return {
          update: { ...reset, snapshot: { ...reset.snapshot, generation: reducer.NO_RECORD } },
          acquire: { ...admitted, generation: reducer.NO_RECORD },
        };
      }
      // A run to reset (or none): from the item just read, then the acquire.
      const update = await this.#resetRun(name, policy, batch, loaded);
      return { update, acquire: await this.acquire(name, policy) };
    }
    const update = await this.record(name, policy, batch);
    return { update, acquire: await this.acquire(name, policy) };
  }

  /**
   * Records outcomes. Batches for one breaker that arrive while a write of it is in flight are
   * written together when it is done (a group commit: each applied in arrival order, in one write),
   * so calls in this process do not race each other's conditional writes; the transition, if any,
   * is reported to one of them.
   */
  async record(name: string, policy: BreakerPolicy, batch: OutcomeBatch): Promise<UpdateResult> {
    if (reducer.releasesOnly(batch)) {
      // Slots given back (a write when the item holds any of them); no item made for it.
      return this.#change(
        name,
        policy,
        (record, now, exists) => {
          const result = reducer.record(record, policy, now, batch);
          return exists
            ? result
            : { ...result, snapshot: { ...result.snapshot, generation: reducer.NO_RECORD } };
        },
        { create: false },
      );
    }
    if (reducer.resetsOnly(policy, batch)) return this.#resetRun(name, policy, batch);
    // Probes, a trip request, and failures under a quorum (who reported them is remembered in
    // the record, and the open depends on it) are read, reduced and written whole.
    if (
      batch.probes.length > 0 ||
      batch.trip === true ||
      (batch.reporter !== undefined && batch.failures > 0)
    ) {
      return this.#change(name, policy, (record, now, _exists, seen, remember) => {
        if (batch.id !== undefined && seen(batch.id)) return stale(record, policy, now);
        if (batch.id !== undefined) remember(batch.id);
        return reducer.record(record, policy, now, batch);
      });
    }
    // One write of a breaker at a time from this process: a batch that arrives while one is in
    // flight (a count, or a group) joins the next group. Two counts in flight at once could both
    // land before the open the first one trips (a second write): the second would be counted in
    // the window of a breaker its completion found open (the model check's settle-pair step).
    // (A group waiting to start is in `#writing` too: it is set when the group is made.)
    if (!this.#writing.has(name)) {
      const counting = this.#count(name, policy, batch);
      this.#inFlight(name, counting);
      const counted = await counting;
      if (!(counted instanceof Refused)) return counted;
      return this.#recordInGroup(name, policy, batch, counted.item);
    }
    return this.#recordInGroup(name, policy, batch);
  }

  /**
   * A batch that only resets a run (`reducer.resetsOnly`): one read (or the item `known` already
   * read), and a write only when there is a run to reset, conditional on the version read.
   */
  #resetRun(name: string, policy: BreakerPolicy, batch: OutcomeBatch, known?: Loaded): Promise<UpdateResult> {
    return this.#change(
      name,
      policy,
      (record, now, exists, seen, remember) => {
        if (batch.id !== undefined && seen(batch.id)) return stale(record, policy, now);
        const result = reducer.resetRun(record, policy, now, batch);
        if (!exists) return { ...result, snapshot: { ...result.snapshot, generation: reducer.NO_RECORD } };
        if (
          batch.id !== undefined &&
          result.snapshot.counts.consecutiveFailures !== record.consecutiveFailures
        ) {
          remember(batch.id);
        }
        return result;
      },
      { create: false, ...(known === undefined ? {} : { known }) },
    );
  }

  /**
   * Counts a closed breaker's outcomes with one atomic `UpdateItem` (ADD to the current bucket's
   * counters and the window's totals, REMOVE of the slots it gives back), conditional on the
   * breaker being closed, without override, at the batch's generation, with the current bucket the
   * newest (`wn`; holding slots, if it gives any back), and on the count not tripping the policy
   * (`tripGuard`). `Refused` when the condition fails, or when the batch would trip the policy
   * whatever the counts: the general path then reads, reduces and writes, the count and the open in
   * one write, so no other process's count can land between them.
   */
  async #count(name: string, policy: BreakerPolicy, batch: OutcomeBatch): Promise<UpdateResult | Refused> {
    const guard = tripGuard(policy, batch);
    if (guard === null) return NOT_TRIED;
    const now = this.#clock.now();
    const index = Math.floor(now / policy.bucketMs);
    const slot = ((index % policy.bucketCount) + policy.bucketCount) % policy.bucketCount;
    const id = batch.id ?? null;
    const epoch = Math.floor(now / ID_EPOCH_MS);
    const released = batch.slots ?? [];
    const releasing: Record<string, string> = {};
    released.forEach((held, i) => {
      releasing[`#r${i}`] = held;
    });
    const removed = Object.keys(releasing).map((n) => `sl.${n}`);
    // A count under another policy (one breaker name, two policies: a misconfiguration) leaves the
    // failure-rate score behind, so it takes away the ratio the score was kept for: no count is
    // let through by a stale score (a whole write redoes it).
    if (policy.trip.kind !== 'failure-rate') removed.push('wr');
    // A throttled breaker's failures tell operators its rejection rate (reducer.ts noteThrottle).
    const throttled = batch.throttleRate !== undefined && batch.failures > 0;
    let reply;
    try {
      reply = await this.#client.send(
        new UpdateItemCommand({
          TableName: this.#table,
          Key: { pk: { S: itemKey(name) } },
          UpdateExpression:
            `SET cf = ${batch.successes > 0 ? ':trailing' : 'cf + :f'}, #ttl = :ttl ` +
            (throttled ? ', tr = :tr, ta = :now ' : '') +
            `ADD #s :s, #f :f, #l :l, #g :g, wt :calls, wf :f, v :one` +
            (guard.score === null ? '' : ', wx :score') +
            (id === null ? '' : ', ids :id') +
            (removed.length === 0 ? '' : ` REMOVE ${removed.join(', ')}`),
          ConditionExpression:
            'st = :closed AND gen = :gen AND ov = :none AND wn = :index' +
            guard.condition +
            (released.length === 0 ? '' : ' AND attribute_exists(sl)') +
            (id === null
              ? ''
              : ' AND (attribute_not_exists(ids) OR (size(ids) < :maxIds' +
                ' AND NOT contains(ids, :seen) AND NOT contains(ids, :seenBefore)))'),
          ExpressionAttributeNames: {
            '#ttl': 'ttl',
            '#s': `b${slot}s`,
            '#f': `b${slot}f`,
            '#l': `b${slot}l`,
            '#g': `b${slot}g`,
            ...releasing,
          },
          ExpressionAttributeValues: {
            ...guard.values,
            ...(batch.successes > 0 ? { ':trailing': { N: String(batch.trailingFailures) } } : {}),
            ...(throttled
              ? {
                  ':tr': { N: String(reducer.throttleMillionths(batch.throttleRate)) },
                  ':now': { N: String(now) },
                }
              : {}),
            ...(guard.score === null ? {} : { ':score': { N: String(guard.score) } }),
            ':ttl': { N: String(expiresAt(policy, { openUntil: 0 }, now)) },
            ':s': { N: String(batch.successes) },
            ':f': { N: String(batch.failures) },
            ':l': { N: String(batch.slow) },
            ':g': { N: String(batch.ignored) },
            ':calls': { N: String(batch.successes + batch.failures) },
            ':one': { N: '1' },
            ':closed': { S: 'closed' },
            ':gen': { N: String(batch.generation) },
            ':none': { S: NO_OVERRIDE },
            ':index': { N: String(index) },
            ...(id === null
              ? {}
              : {
                  ':id': { SS: [`${epoch}:${id}`] },
                  ':seen': { S: `${epoch}:${id}` },
                  ':seenBefore': { S: `${epoch - 1}:${id}` },
                  ':maxIds': { N: String(MAX_IDS) },
                }),
          },
          ReturnValues: 'ALL_NEW',
          // DynamoDB answers a failed condition with the item as it found it: the general path
          // starts from it instead of reading it again (dynalite answers without it: then it reads).
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
    } catch (error) {
      if (isConditionFailure(error)) {
        const item = (error as { Item?: Record<string, AttributeValue> }).Item;
        return item === undefined ? NOT_TRIED : new Refused(item);
      }
      throw new StoreError(`DynamoDB update of breaker ${JSON.stringify(name.slice(0, 100))} failed`, {
        cause: error,
      });
    }
    const parsed = reply.Attributes === undefined ? null : fromItem(reply.Attributes);
    if (parsed === null) return NOT_TRIED;
    // Outcomes that cannot trip the policy (ignored ones; successes but under a failure rate)
    // leave it closed, even when the window holds enough failures: below a quorum it stays so.
    if (!outcomesCanTrip(policy.trip, batch.successes, batch.failures)) {
      return { snapshot: reducer.snapshot(parsed.record, policy, now), transition: null, stale: false };
    }
    const quorum = batch.quorum ?? 1;
    const result = reducer.tripIfDue(parsed.record, policy, now, batch.generation, 0, 0, quorum);
    if (result.transition === null) return result;
    // Not expected: the guard lets no count that trips the policy through. Should the totals ever
    // disagree with the buckets, the breaker still opens, with a write conditional on the version
    // the update returned (if someone wrote meanwhile, from a fresh read).
    const fresh = fromItem(reply.Attributes!)!;
    return this.#change(
      name,
      policy,
      (record, at) =>
        reducer.tripIfDue(record, policy, at, batch.generation, batch.random, batch.jitterMs ?? 0, quorum),
      {
        known: {
          record: fresh.record,
          ids: idsOf(reply.Attributes!),
          exists: true,
          rawVersion: reply.Attributes!.v,
          nextVersion: fresh.version + 1,
          corrupt: false,
        },
      },
    );
  }

  /**
   * Writes `batch` in the group of this breaker's next write (see `record`). `found`: the item as
   * a refused count found it, the first attempt's read when this batch starts a group.
   */
  #recordInGroup(
    name: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
    found: Record<string, AttributeValue> | null = null,
  ): Promise<UpdateResult> {
    const waiting = this.#waiting.get(name);
    if (
      waiting !== undefined &&
      waiting.members[0]!.generation === batch.generation &&
      waiting.policy === policy
    ) {
      const place = waiting.members.push(batch) - 1;
      return waiting.result.then((result) => answerFor(waiting, place, result));
    }
    const group: Group = {
      policy,
      members: [batch],
      stale: new Set(),
      result: Promise.resolve(null as never),
    };
    this.#waiting.set(name, group);
    const previous = this.#writing.get(name) ?? Promise.resolve();
    group.result = previous.then(() => {
      if (this.#waiting.get(name) === group) this.#waiting.delete(name);
      return this.#change(
        name,
        policy,
        (record, now, _exists, seen, remember) => {
          // Each member in the order it arrived, as if written alone: one after a member that opened
          // the breaker is stale (its generation is gone), as it would be from the store. Members
          // seen before (re-sends of writes that landed, or of one earlier in the group) are left out.
          let last: UpdateResult | null = null;
          let moved: UpdateResult['transition'] = null;
          const taken = new Set<string>();
          group.stale.clear();
          for (const [place, member] of group.members.entries()) {
            if (member.id !== undefined) {
              if (seen(member.id) || taken.has(member.id)) {
                group.stale.add(place);
                continue;
              }
              taken.add(member.id);
              remember(member.id);
            }
            last = reducer.record(record, policy, now, member);
            if (last.stale) group.stale.add(place);
            moved ??= last.transition;
          }
          if (last === null) return stale(record, policy, now);
          return { ...last, transition: moved };
        },
        found === null ? {} : { known: this.#loadedFrom(found, name) },
      );
    });
    this.#inFlight(name, group.result);
    return group.result.then((result) => answerFor(group, 0, result));
  }

  /** Marks `writing` as this process's write of breaker `name` in flight, until it settles. */
  #inFlight(name: string, writing: Promise<unknown>): void {
    const done: Promise<void> = writing.then(
      () => undefined,
      () => undefined,
    );
    this.#writing.set(name, done);
    void done.then(() => {
      if (this.#writing.get(name) === done) this.#writing.delete(name);
    });
  }

  force(
    name: string,
    policy: BreakerPolicy,
    override: Override | null,
    options?: ForceOptions,
  ): Promise<UpdateResult> {
    return this.#change(name, policy, (record, now) => reducer.force(record, policy, now, override, options));
  }

  /**
   * Starts the breaker afresh, keeping its override (`Store.reset`): read, reduce and one
   * `PutItem` conditional on the version read, as `force`. A breaker without an item is answered
   * without a write.
   */
  reset(name: string, policy: BreakerPolicy): Promise<UpdateResult> {
    return this.#change(
      name,
      policy,
      (record, now, exists) =>
        exists
          ? reducer.reset(record, policy, now)
          : { snapshot: reducer.snapshot(record, policy, now), transition: null, stale: false },
      { create: false },
    );
  }

  /**
   * The breaker's snapshot, or null when there is no item or none this version can read (to a
   * breaker that is no record: its next write replaces it). Writes nothing.
   */
  async inspect(name: string, policy: BreakerPolicy): Promise<Snapshot | null> {
    const report = await this.examine(name, policy);
    return report.kind === 'record' ? report.snapshot : null;
  }

  /** What the item of `name` holds (`RecordExaminer`): one consistent read, nothing written. */
  async examine(name: string, policy: BreakerPolicy): Promise<RecordReport> {
    const item = await this.#read(name);
    if (item === undefined) return { kind: 'none' };
    const parsed = fromItem(item);
    if (parsed !== null)
      return { kind: 'record', snapshot: reducer.snapshot(parsed.record, policy, this.#clock.now()) };
    const version = Number(item.v?.N);
    return {
      kind: 'corrupt',
      reason:
        Number.isSafeInteger(version) && version >= 1
          ? 'the item does not hold a breaker record this version can read'
          : 'the item has no version attribute v: not a circuitry record',
    };
  }

  /**
   * Marks `reporter` active for `ttlMs` and answers how many reporters are active now
   * (`Store.heartbeat`, for a quorum): one `UpdateItem` on one item for the whole table (`pk`
   * `r:reporters`, an attribute `r_<id>` per reporter, holding when it stops counting), and, when
   * it holds reporters long gone, a second that removes them. Never listed as a breaker.
   */
  async heartbeat(reporter: string, ttlMs: number): Promise<number> {
    const now = this.#clock.now();
    const key = { pk: { S: REPORTERS_KEY } };
    const reply = await this.#send(
      () =>
        this.#client.send(
          new UpdateItemCommand({
            TableName: this.#table,
            Key: key,
            UpdateExpression: 'SET #r = :until, #ttl = :ttl',
            ExpressionAttributeNames: { '#r': `r_${reporter}`, '#ttl': 'ttl' },
            ExpressionAttributeValues: {
              ':until': { N: String(now + ttlMs) },
              ':ttl': { N: String(Math.ceil((now + ttlMs) / 1_000) + TTL_MARGIN_S) },
            },
            ReturnValues: 'ALL_NEW',
          }),
        ),
      'heartbeat',
    );
    let active = 0;
    const gone: string[] = [];
    for (const [attribute, value] of Object.entries(reply.Attributes ?? {})) {
      if (!attribute.startsWith('r_')) continue;
      if (Number(value.N) > now) active += 1;
      else gone.push(attribute);
    }
    if (gone.length > 0) {
      // Removed only if none of them beat again meanwhile; otherwise left for the next heartbeat.
      const names = Object.fromEntries(gone.slice(0, 50).map((a, i) => [`#g${i}`, a]));
      await this.#client
        .send(
          new UpdateItemCommand({
            TableName: this.#table,
            Key: key,
            UpdateExpression: `REMOVE ${Object.keys(names).join(', ')}`,
            ConditionExpression: Object.keys(names)
              .map((n) => `${n} <= :now`)
              .join(' AND '),
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: { ':now': { N: String(now) } },
          }),
        )
        .catch(() => undefined);
    }
    return Math.max(1, active);
  }

  /** Breaker names starting with `prefix`, by `Scan`: for operators and tools, not hot paths. */
  async list(prefix: string, cursor: string | null = null): Promise<ListPage> {
    let start: Record<string, AttributeValue> | undefined;
    if (cursor !== null) {
      try {
        start = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<
          string,
          AttributeValue
        >;
      } catch {
        throw new TypeError(`Not a cursor from this store's list(): ${cursor}`);
      }
    }
    const reply = await this.#send(
      () =>
        this.#client.send(
          new ScanCommand({
            TableName: this.#table,
            ProjectionExpression: '#name',
            // Only items that carry the record marker (the version attribute).
            FilterExpression: 'begins_with(#name, :prefix) AND attribute_exists(#v)',
            ExpressionAttributeNames: { '#name': 'name', '#v': 'v' },
            ExpressionAttributeValues: { ':prefix': { S: prefix } },
            Limit: PAGE_SIZE,
            ...(start === undefined ? {} : { ExclusiveStartKey: start }),
          }),
        ),
      'list',
    );
    const keys = (reply.Items ?? []).flatMap((item) => (item.name?.S === undefined ? [] : [item.name.S]));
    const next = reply.LastEvaluatedKey;
    return {
      keys,
      cursor: next === undefined ? null : Buffer.from(JSON.stringify(next), 'utf8').toString('base64url'),
    };
  }

  /**
   * Read, reduce, and write back only if something changed, conditional on the version read.
   * `known`: the item as a write just returned it, used for the first attempt instead of a read.
   * `create: false`: a breaker without an item gets none (the reduction is answered, not written).
   */
  async #change<T>(
    name: string,
    policy: BreakerPolicy,
    reduce: (
      record: BreakerRecord,
      now: number,
      exists: boolean,
      seen: (id: string) => boolean,
      remember: (id: string) => void,
    ) => T,
    { known, create = true }: { known?: Loaded; create?: boolean } = {},
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const loaded = attempt === 1 && known !== undefined ? known : await this.#load(name);
      const before = !loaded.exists || loaded.corrupt ? '' : JSON.stringify(loaded.record);
      const now = this.#clock.now();
      const added: string[] = [];
      const result = reduce(
        loaded.record,
        now,
        loaded.exists,
        (id) => seenAt(loaded.ids, id, now),
        (id) => added.push(id),
      );
      if (!loaded.exists && !create) return result;
      const after = JSON.stringify(loaded.record);
      if (after === before) return result;
      const item = toItem(name, policy, loaded.record, loaded.nextVersion, now);
      const ids = keptIds(loaded.ids, added, now);
      if (ids.length > 0) item.ids = { SS: ids };
      try {
        await this.#client.send(
          new PutItemCommand({
            TableName: this.#table,
            Item: item,
            // Only if nobody wrote since the read (a corrupt item without a version included).
            ...(!loaded.exists
              ? { ConditionExpression: 'attribute_not_exists(pk)' }
              : loaded.rawVersion === undefined
                ? { ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(v)' }
                : { ConditionExpression: 'v = :v', ExpressionAttributeValues: { ':v': loaded.rawVersion } }),
          }),
        );
        return result;
      } catch (error) {
        if (!isConditionFailure(error)) {
          throw new StoreError(`DynamoDB write of breaker ${JSON.stringify(name.slice(0, 100))} failed`, {
            cause: error,
          });
        }
        if (attempt >= this.#maxAttempts) {
          throw new StoreError(
            `DynamoDB write of breaker ${JSON.stringify(name.slice(0, 100))} lost ${attempt} races in a row`,
            { cause: error },
          );
        }
        // Someone else wrote first: read their item and try again, after a short random pause
        // that grows with the contention.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(25, 2 ** attempt)));
      }
    }
  }

  async #read(name: string): Promise<Record<string, AttributeValue> | undefined> {
    const reply = await this.#send(
      () =>
        this.#client.send(
          new GetItemCommand({
            TableName: this.#table,
            Key: { pk: { S: itemKey(name) } },
            ConsistentRead: true,
          }),
        ),
      'read',
    );
    return reply.Item;
  }

  async #load(name: string): Promise<Loaded> {
    return this.#loadedFrom(await this.#read(name), name);
  }

  /** What an item read (or handed back by a refused write) says; `name` to report a corrupt one. */
  #loadedFrom(item: Record<string, AttributeValue> | undefined, name: string): Loaded {
    if (item === undefined) {
      return {
        record: reducer.emptyRecord(reducer.initialGeneration(this.#clock.now())),
        ids: NO_IDS,
        exists: false,
        rawVersion: undefined,
        nextVersion: 1,
        corrupt: false,
      };
    }
    const parsed = fromItem(item);
    if (parsed !== null) {
      return {
        record: parsed.record,
        ids: idsOf(item),
        exists: true,
        rawVersion: item.v,
        nextVersion: parsed.version + 1,
        corrupt: false,
      };
    }
    this.#corrupt(name);
    const version = Number(item.v?.N);
    const valid = Number.isSafeInteger(version) && version >= 1;
    // Reset: the write that follows replaces the item, conditional on the `v` it had (if any).
    return {
      record: reducer.emptyRecord(reducer.initialGeneration(this.#clock.now())),
      ids: NO_IDS,
      exists: true,
      rawVersion: item.v,
      nextVersion: valid ? version + 1 : 1,
      corrupt: true,
    };
  }

  async #send<O>(send: () => Promise<O>, what: string): Promise<O> {
    try {
      return await send();
    } catch (error) {
      throw new StoreError(`DynamoDB ${what} failed`, { cause: error });
    }
  }

  #corrupt(name: string): void {
    if (this.#onCorruptRecord !== null) this.#onCorruptRecord(name);
    if (this.#logger !== null) {
      this.#logger.warn(
        { breaker: name, table: this.#table },
        'circuit breaker item was corrupt or foreign; reset it',
      );
    } else if (this.#onCorruptRecord === null) {
      process.emitWarning(
        `circuitry: the DynamoDB item of breaker ${JSON.stringify(name.slice(0, 200))} in ${this.#table} was corrupt or foreign and was reset`,
        'CircuitryCorruptRecordWarning',
      );
    }
  }
}

const NO_IDS: ReadonlySet<string> = new Set();

/** The batch id entries of an item (see `ID_EPOCH_MS`). */
function idsOf(item: Record<string, AttributeValue>): ReadonlySet<string> {
  const entries = item.ids?.SS;
  return entries === undefined ? NO_IDS : new Set(entries);
}

/**
 * The window's totals an item keeps beside its buckets, so a count's condition can tell whether
 * it trips the policy: `wt` calls (successes and failures) and `wf` failures in the window ending
 * at the newest bucket, `wn` (a whole write sets them from the buckets, a count adds to them: it
 * lands only in bucket `wn`, so the window is the same buckets); under a failure rate also
 * `wx`, a score of the counts for the ratio in `wr`, which is below 0 only while the rate is (see
 * `rateWeights`).
 */
function windowTotals(record: BreakerRecord, policy: BreakerPolicy): Record<string, AttributeValue> {
  // At no time at all, the window is the one ending at the newest bucket.
  const counts = windowCounts(record, -Infinity, policy.bucketMs, policy.bucketCount);
  const totals: Record<string, AttributeValue> = {
    wt: { N: String(counts.total) },
    wf: { N: String(counts.failures) },
  };
  // The newest bucket: a count lands only there (where the reducer counts, at any time up to its
  // end: a process whose clock lags counts in it too), and the totals hold that bucket's window.
  const newest = record.buckets.at(-1);
  if (newest !== undefined) totals.wn = { N: String(newest.index) };
  if (policy.trip.kind === 'failure-rate') {
    totals.wr = { S: String(policy.trip.ratio) };
    totals.wx = { N: String(rateScore(policy.trip.ratio, counts.successes, counts.failures)) };
  }
  return totals;
}

/** `wx` scale, and the most calls in a window for which `wx` below -1 proves the rate is below. */
const RATE_SCALE = 2 ** 20;
export const RATE_MAX_CALLS = 2 ** 33;

/**
 * The failure-rate score of these counts (`wx`), or of a count's outcomes (what it adds to `wx`):
 * `failure` per failure minus `success` per success (`rateWeights`).
 */
export function rateScore(ratio: number, successes: number, failures: number): number {
  const weight = rateWeights(ratio);
  return weight.failure * failures - weight.success * successes;
}

/**
 * The integer weights of the failure-rate score: `failure` per failure, minus `success` per
 * success. They round the exact weights `(1 - ratio)` and `ratio` (times `RATE_SCALE`) up and down,
 * so the score is never below the exact `RATE_SCALE * (failures - ratio * calls)`: a score below -1
 * means the rate is below the ratio by more than `1 / (RATE_SCALE * calls)`, more than the rounding
 * of the quotient `shouldTrip` takes for up to `RATE_MAX_CALLS` calls. Near the ratio a count is
 * refused and goes the whole way (exact), never let through wrongly.
 */
function rateWeights(ratio: number): { failure: number; success: number } {
  return {
    failure: Math.ceil((1 - ratio) * RATE_SCALE) + 1,
    success: Math.max(0, Math.floor(ratio * RATE_SCALE) - 1),
  };
}

/** The part of a count's condition that keeps it from tripping the policy (`tripGuard`). */
interface TripGuard {
  readonly condition: string;
  readonly values: Record<string, AttributeValue>;
  /** What the count adds to `wx` (a failure rate's score), or null when it leaves `wx` alone. */
  readonly score: number | null;
}

const UNGUARDED: TripGuard = { condition: '', values: {}, score: null };

/**
 * What a count of `batch` must find for it not to trip the policy, or null when it trips whatever
 * it finds. A count that trips the policy must not be an `UpdateItem` followed by an open: a
 * count of another process could land between the two (after the trip, so it must not count, and
 * a success would even end the run that tripped it). Refused, it is read, reduced and written with
 * the open, in one conditional write.
 */
function tripGuard(policy: BreakerPolicy, batch: OutcomeBatch): TripGuard | null {
  const trip = policy.trip;
  const calls = batch.successes + batch.failures;
  switch (trip.kind) {
    case 'consecutive-failures':
      if (batch.failures === 0) return UNGUARDED;
      // A success sets the run to the failures after it.
      if (batch.successes > 0) return batch.trailingFailures < trip.threshold ? UNGUARDED : null;
      return {
        condition: ' AND cf < :runBelow',
        values: { ':runBelow': { N: String(trip.threshold - batch.failures) } },
        score: null,
      };
    case 'failures-in-window':
      if (batch.failures === 0) return UNGUARDED;
      return {
        condition: ' AND wf < :failuresBelow',
        values: { ':failuresBelow': { N: String(trip.threshold - batch.failures) } },
        score: null,
      };
    case 'failure-rate': {
      if (calls === 0) return UNGUARDED;
      const score = rateScore(trip.ratio, batch.successes, batch.failures);
      return {
        // Below minimumCalls after the count, or a rate surely below the ratio.
        condition: ' AND wr = :ratio AND (wt < :callsBelow OR (wx < :scoreBelow AND wt < :callsAtMost))',
        values: {
          ':ratio': { S: String(trip.ratio) },
          ':callsBelow': { N: String(trip.minimumCalls - calls) },
          ':scoreBelow': { N: String(-1 - score) },
          ':callsAtMost': { N: String(RATE_MAX_CALLS - calls) },
        },
        score,
      };
    }
    default:
      return UNGUARDED;
  }
}

/** The answer to a batch seen before: nothing changed. */
function stale(record: BreakerRecord, policy: BreakerPolicy, now: number): UpdateResult {
  return { snapshot: reducer.snapshot(record, policy, now), transition: null, stale: true };
}

function isConditionFailure(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error as Error | null)?.name === 'ConditionalCheckFailedException'
  );
}

/** `ov` of an item without an operator override (some emulators refuse empty strings). */
const NO_OVERRIDE = 'none';

/**
 * The item for a record. The window's counters live in attributes of their own, one set per
 * bucket slot (`b<slot>i` the bucket's index, then `s`, `f`, `l`, `g`: successes, failures, slow,
 * ignored), with the run of failures in `cf` and the window's totals beside them
 * (`windowTotals`), so counting is an atomic ADD; the rest of the record is JSON in `rec`, mirrored
 * in `st`, `gen` and `ov` for conditions.
 */
function toItem(name: string, policy: BreakerPolicy, record: BreakerRecord, version: number, now: number) {
  const item: Record<string, AttributeValue> = {
    pk: { S: itemKey(name) },
    name: { S: name },
    v: { N: String(version) },
    rec: {
      S: JSON.stringify({
        ...record,
        buckets: [],
        consecutiveFailures: 0,
        slots: undefined,
        throttle: undefined,
      }),
    },
    st: { S: record.state },
    gen: { N: String(record.generation) },
    ov: { S: record.override ?? NO_OVERRIDE },
    cf: { N: String(record.consecutiveFailures) },
    ttl: { N: String(expiresAt(policy, record, now)) },
    ...windowTotals(record, policy),
  };
  for (const bucket of record.buckets) {
    const slot = ((bucket.index % policy.bucketCount) + policy.bucketCount) % policy.bucketCount;
    item[`b${slot}i`] = { N: String(bucket.index) };
    item[`b${slot}s`] = { N: String(bucket.successes) };
    item[`b${slot}f`] = { N: String(bucket.failures) };
    item[`b${slot}l`] = { N: String(bucket.slow) };
    item[`b${slot}g`] = { N: String(bucket.ignored) };
  }
  if (record.throttle !== undefined) {
    item.tr = { N: String(reducer.throttleMillionths(record.throttle.rate)) };
    item.ta = { N: String(record.throttle.at) };
  }
  if (record.slots !== undefined && record.slots.length > 0) {
    const held: Record<string, AttributeValue> = {};
    for (const s of record.slots) held[s.id] = { N: String(s.expiresAt) };
    item.sl = { M: held };
  }
  return item;
}

const SLOT = /^b(\d+)i$/;

/** The record and version in an item, or null when the item is not one this version wrote. */
function fromItem(item: Record<string, AttributeValue>): { record: BreakerRecord; version: number } | null {
  const version = Number(item.v?.N);
  if (!Number.isSafeInteger(version) || version < 1) return null;
  let record: unknown;
  try {
    record = item.rec?.S === undefined ? null : JSON.parse(item.rec.S);
  } catch {
    return null;
  }
  if (!reducer.isValidRecord(record)) return null;
  const count = (value: AttributeValue | undefined): number | null => {
    const n = Number(value?.N);
    return value?.N !== undefined && Number.isSafeInteger(n) && n >= 0 ? n : null;
  };
  const cf = count(item.cf);
  if (cf === null || item.st?.S !== record.state || Number(item.gen?.N) !== record.generation) return null;
  const buckets: BreakerRecord['buckets'] = [];
  for (const attribute of Object.keys(item)) {
    const slot = SLOT.exec(attribute)?.[1];
    if (slot === undefined) continue;
    const index = Number(item[attribute]!.N);
    const [successes, failures, slow, ignored] = ['s', 'f', 'l', 'g'].map((c) => count(item[`b${slot}${c}`]));
    if (
      !Number.isSafeInteger(index) ||
      successes == null ||
      failures == null ||
      slow == null ||
      ignored == null
    ) {
      return null;
    }
    buckets.push({ index, successes, failures, slow, ignored });
  }
  buckets.sort((a, b) => a.index - b.index);
  let slots: BreakerRecord['slots'];
  if (item.sl !== undefined) {
    if (item.sl.M === undefined) return null;
    slots = [];
    for (const [id, value] of Object.entries(item.sl.M)) {
      const expiresAt = count(value);
      if (expiresAt === null) return null;
      slots.push({ id, expiresAt });
    }
  }
  // The throttle rate a breaker reported (`tr` millionths, `ta` when), kept apart: counting sets it.
  let throttle: BreakerRecord['throttle'];
  if (item.tr !== undefined || item.ta !== undefined) {
    const rate = count(item.tr);
    const at = count(item.ta);
    if (rate === null || at === null || rate > 1_000_000) return null;
    throttle = { rate: rate / 1_000_000, at };
  }
  return {
    record: {
      ...record,
      consecutiveFailures: cf,
      buckets,
      ...(slots === undefined ? {} : { slots }),
      ...(throttle === undefined ? {} : { throttle }),
    },
    version,
  };
}

/** The TTL, in epoch seconds: after anything the record still has to remember, plus a margin. */
function expiresAt(policy: BreakerPolicy, record: Pick<BreakerRecord, 'openUntil'>, now: number): number {
  const longestOpen = Math.max(policy.maxOpenMs * (1 + policy.jitterRatio), record.openUntil - now);
  const keepMs = policy.windowMs + longestOpen + Math.max(policy.probeLeaseMs, policy.concurrencyLeaseMs);
  return Math.ceil((now + keepMs) / 1_000) + TTL_MARGIN_S;
}

/** Options of `createBreakerTable`. */
export interface CreateBreakerTableOptions {
  /** How the new table is billed. @defaultValue 'PAY_PER_REQUEST' (on demand) */
  readonly billingMode?: 'PAY_PER_REQUEST' | 'PROVISIONED';
  /** With `PROVISIONED`: read capacity units. @defaultValue 5 */
  readonly readCapacityUnits?: number;
  /** With `PROVISIONED`: write capacity units. @defaultValue 5 */
  readonly writeCapacityUnits?: number;
  /** How long to wait for the table to become active, in seconds. @defaultValue 120 */
  readonly maxWaitSeconds?: number;
}

/** What `createBreakerTable` did. */
export interface CreateBreakerTableResult {
  /** False when the table was already there. */
  readonly created: boolean;
  /**
   * `enabled` when TTL on `ttl` is on (now or before); `unsupported` when the endpoint does not
   * implement `UpdateTimeToLive` (dynalite, some local emulators): items then stay until deleted.
   */
  readonly timeToLive: 'enabled' | 'unsupported';
}

/**
 * Creates the table a `DynamoDBStore` needs (partition key `pk`, string; on-demand billing by
 * default), waits until it is active, and turns on time-to-live on `ttl`. Idempotent: an existing
 * table, or TTL already on, is fine.
 */
export async function createBreakerTable(
  client: DynamoDBClient,
  tableName: string,
  options: CreateBreakerTableOptions = {},
): Promise<CreateBreakerTableResult> {
  const billingMode = options.billingMode ?? 'PAY_PER_REQUEST';
  let created = true;
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: billingMode,
        ...(billingMode === 'PROVISIONED'
          ? {
              ProvisionedThroughput: {
                ReadCapacityUnits: options.readCapacityUnits ?? 5,
                WriteCapacityUnits: options.writeCapacityUnits ?? 5,
              },
            }
          : {}),
      }),
    );
  } catch (error) {
    if (!(error instanceof ResourceInUseException) && (error as Error).name !== 'ResourceInUseException')
      throw error;
    created = false;
  }
  await waitUntilTableExists(
    { client, maxWaitTime: options.maxWaitSeconds ?? 120 },
    { TableName: tableName },
  );
  const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
  const status = ttl.TimeToLiveDescription?.TimeToLiveStatus;
  if (status === 'ENABLED' || status === 'ENABLING') return { created, timeToLive: 'enabled' };
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      }),
    );
  } catch (error) {
    const name = (error as Error).name;
    if (name === 'UnknownOperationException' || name === 'UnrecognizedClientException') {
      return { created, timeToLive: 'unsupported' };
    }
    throw error;
  }
  return { created, timeToLive: 'enabled' };
}
