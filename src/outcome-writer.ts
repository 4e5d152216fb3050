import { outcomesCanTrip, shouldTrip } from './core/policy.js';
import type { Outcome, OutcomeBatch, UpdateResult, WindowCounts } from './core/types.js';
import type { BreakerLeftovers, CoordinationHost, StoreOperation } from './coordination.js';
import { isPromiseLike } from './coordination.js';
import { countsOf } from './fallback.js';
import type { KeptCounts, LocalFallback } from './fallback.js';
import type { ResolvedOptions } from './options.js';
import type { PendingBatch } from './pending-batch.js';
import { NO_PROBES, addOutcome, batchNumber, emptyBatch, nextWriterTag } from './pending-batch.js';
import type { KeptOutcomesOwner, StoreHealth } from './store-health.js';
import { isStoreTimeout } from './store-health.js';
import type { Awaitable } from './store.js';

/** Batches handed to a store's `record` at least once (so a re-send of one is in doubt). */
const SENT = new WeakSet<OutcomeBatch>();

/** How a batch goes to the store when not by `record` alone (a carrying acquire: `carry`). */
export type Send = (batch: OutcomeBatch) => Awaitable<UpdateResult>;

/** Writers holding a carried batch, sent at the end of the event-loop turn (one immediate for all). */
const carrying: OutcomeWriter[] = [];
let carryScheduled = false;

function sendCarried(): void {
  carryScheduled = false;
  for (const writer of carrying.splice(0)) writer.sendCarried();
}

/** What the writer needs from the coordination that owns it: its view, and how it calls the store. */
export interface WriterOwner {
  readonly generation: number;
  readonly known: boolean;
  readonly counts: WindowCounts;
  /** Runs a store call of the breaker's own (see `Coordination`). */
  own<T>(call: () => T): T;
  storeFailed(operation: StoreOperation, error: unknown): void;
  storeTimeoutMs(): number;
  /** A write was answered in time: the view learns from it (and a custom policy may trip). */
  writeAnswered(result: UpdateResult): Promise<void> | undefined;
  /** A write that timed out was answered after all. */
  writeAnsweredLate(result: UpdateResult): void;
  /** Reads the breaker's generation, for outcomes kept before the store ever answered. */
  learnGeneration(): Promise<void>;
  /** The share of calls the adaptive throttle turns away now (0 without one). */
  throttleRate(): number;
}

/**
 * How one breaker's outcomes reach its store: each one written as it happens (the caller waits
 * only when the outcome can change what it does next), or buffered and flushed as one batch
 * (`flushIntervalMs`); what the store did not confirm kept (never sent: merged by generation;
 * sent without an answer: in doubt, re-sent whole under its batch id) and written as soon as the
 * store answers again, and by `flush()` and `close()`; and what is left when they give up.
 */
export class OutcomeWriter implements KeptOutcomesOwner {
  readonly #owner: WriterOwner;
  readonly #host: CoordinationHost;
  readonly #o: ResolvedOptions<unknown>;
  readonly #health: StoreHealth;
  readonly #fallback: LocalFallback;
  #buffer: PendingBatch | null = null;
  #flushTimer: ReturnType<typeof setTimeout> | null = null;
  #flushing: Promise<void> | null = null;
  #resending: Promise<void> | null = null;
  /** Batches sent and not answered yet (a timed-out one stays until its late answer), with that answer. */
  readonly #writing = new Map<OutcomeBatch, PromiseLike<unknown>>();
  /** Writes nobody waits for (a success under a count policy): `flush()` waits for them. */
  readonly #background = new Set<Promise<void>>();
  /** While closing: write whatever is held even if the store is being left alone. */
  #draining = false;
  /** A batch nobody waits for, held until the breaker's next acquire carries it or the turn ends. */
  #carried: OutcomeBatch | null = null;
  /** This writer's tag in batch ids (made with the first id), and the number of the last batch. */
  #tag: string | null = null;
  #numbered = 0;

  constructor(
    owner: WriterOwner,
    host: CoordinationHost,
    options: ResolvedOptions<unknown>,
    health: StoreHealth,
    fallback: LocalFallback,
  ) {
    this.#owner = owner;
    this.#host = host;
    this.#o = options;
    this.#health = health;
    this.#fallback = fallback;
  }

  /**
   * The id of a new batch of this breaker's: `<writer>.<n>`, `n` one more than the last (in base
   * 36). Give the batch `idFloor()` too, taken right after.
   */
  nextId(): string {
    this.#tag ??= nextWriterTag();
    this.#numbered += 1;
    return `${this.#tag}.${this.#numbered.toString(36)}`;
  }

  /**
   * The batch just numbered's `OutcomeBatch.idFloor`: the lowest number of this writer's batches
   * that may still be sent (in flight, kept in doubt, waiting to be carried, or the new one). Only
   * ever too low, never too high: a batch keeps the floor it was given, and numbers only grow.
   */
  idFloor(): number {
    let floor = this.#numbered;
    if (this.#writing.size === 0 && this.#carried === null && !this.#fallback.holdsOutcomes) return floor;
    for (const batch of this.#writing.keys()) floor = lowerNumber(floor, batch);
    if (this.#carried !== null) floor = lowerNumber(floor, this.#carried);
    for (const batch of this.#fallback.keptBatches()) floor = lowerNumber(floor, batch);
    return floor;
  }

  /**
   * Writes `batch` without the caller waiting for it (what a success under a count policy does:
   * it only resets a run); `flush()` and `close()` wait for it.
   */
  writeInBackground(batch: OutcomeBatch, send?: Send): void {
    const writing = this.write(batch, send);
    if (writing === undefined) return;
    const background = this.#background;
    background.add(writing);
    // `then` with one function for both outcomes, not `finally`: `writing` never rejects, and
    // `finally` makes three more promises per call.
    const done = (): void => void background.delete(writing);
    void writing.then(done, done);
    if (send === undefined && this.#changesAdmission(batch)) {
      this.preceding = writing;
      void writing.finally(() => {
        if (this.preceding === writing) this.preceding = null;
      });
    }
  }

  /**
   * The latest write nobody waits for that can change what an acquire answers, while it is in
   * flight (see `#changesAdmission`): this breaker's next acquire is sent after it has landed, so
   * a call that starts after another ended never finds the store as if that one had not.
   */
  preceding: Promise<void> | null = null;

  /** Whether `batch` can change what an acquire answers: it gives back a slot, or counts a success that may trip. */
  #changesAdmission(batch: OutcomeBatch): boolean {
    if (batch.slots !== undefined && batch.slots.length > 0) return true;
    const kind = this.#o.policy.trip.kind;
    return batch.successes > 0 && kind !== 'consecutive-failures' && kind !== 'failures-in-window';
  }

  /**
   * Like `writeInBackground`, but the batch waits for the rest of this event-loop turn: a call the
   * breaker admits meanwhile carries it on its acquire (`takeCarried`, `Store.recordThenAcquire`),
   * so a caller making calls one after another pays one round trip per call, not two. Otherwise
   * it leaves at the end of the turn, by itself. Only for a store with `recordThenAcquire`.
   */
  carry(batch: OutcomeBatch): void {
    const held = this.#carried;
    this.#carried = batch;
    if (held !== null) {
      // One batch waits at a time: the one before leaves now, so they reach the store in order.
      this.writeInBackground(held);
      return;
    }
    carrying.push(this);
    if (!carryScheduled) {
      carryScheduled = true;
      setImmediate(sendCarried);
    }
  }

  /** The batch waiting to be carried, which the caller now sends (null when none). */
  takeCarried(): OutcomeBatch | null {
    const batch = this.#carried;
    this.#carried = null;
    return batch;
  }

  /** Sends the batch waiting to be carried, if any, by itself. */
  sendCarried(): void {
    const batch = this.takeCarried();
    if (batch !== null) this.writeInBackground(batch);
  }

  /**
   * Sends one batch to the store (by `record`, or by `send`). Never rejects: a store failure never
   * replaces the call's outcome.
   */
  write(batch: OutcomeBatch, send?: Send): Promise<void> | undefined {
    const o = this.#o;
    const health = this.#health;
    // A batch sent before (an in-doubt one being re-sent) may have landed: if it is not sent now,
    // it stays in doubt, under its id, never merged into a new batch that would count it again.
    const sentBefore = SENT.has(batch);
    if (!this.#draining && health.failures > 0 && !health.usable(o.clock.now())) {
      this.keep(batch, sentBefore);
      return undefined;
    }
    let result: Awaitable<UpdateResult>;
    try {
      const reporter = this.#host.reporter;
      const stamped =
        reporter === null || o.quorum === null ? batch : reporter.stamp(batch, o.quorum, o.policy);
      // Failures of a throttled breaker tell the store its rejection rate, for operators.
      const sent =
        o.throttle === null || batch.failures === 0
          ? stamped
          : { ...stamped, throttleRate: this.#owner.throttleRate() };
      result = this.#owner.own(() =>
        send === undefined ? o.store.record(this.#host.name, o.policy, sent) : send(sent),
      );
    } catch (error) {
      this.#owner.storeFailed('record', error);
      this.keep(batch, sentBefore);
      return undefined;
    }
    SENT.add(batch);
    if (isPromiseLike(result)) {
      // In flight, for `drain` (which waits for it settled) and `idFloor`. `result` is handled
      // below (`call`), so keeping it as it is makes no unhandled rejection and no promise.
      const writing = this.#writing;
      writing.set(batch, result);
      return health
        .call(
          result,
          this.#owner.storeTimeoutMs(),
          'record',
          (late) => {
            writing.delete(batch);
            this.#owner.writeAnsweredLate(late);
          },
          // Timed out, then failed: it may or may not have landed. Kept under its id.
          () => {
            writing.delete(batch);
            this.keep(batch, true);
          },
        )
        .then(
          (r) => {
            writing.delete(batch);
            return this.#owner.writeAnswered(r);
          },
          (error: unknown) => {
            this.#owner.storeFailed('record', error);
            // A write that failed may still have landed (the reply was lost): kept under its id,
            // so a store that remembers ids counts it once. One that timed out is kept only if
            // the store later says it failed (above); if it lands, it was counted.
            if (!isStoreTimeout(error)) {
              writing.delete(batch);
              this.keep(batch, true);
            }
          },
        );
    }
    return this.#owner.writeAnswered(result);
  }

  keep(batch: OutcomeBatch, inDoubt: boolean): void {
    this.#fallback.keep(batch, inDoubt, this.#o.clock.now());
    if (this.#fallback.holdsOutcomes) this.#health.keep(this);
  }

  /**
   * Writes what was kept while the store did not answer: called by the store's health as soon as
   * any breaker's call succeeds, and by `flush()`.
   */
  resendKept(): Promise<void> {
    if (this.#resending !== null) return this.#resending;
    if (!this.#fallback.holdsOutcomes) return Promise.resolve();
    const resending = this.#resend().finally(() => {
      this.#resending = null;
    });
    this.#resending = resending;
    return resending;
  }

  async #resend(): Promise<void> {
    const unsentGeneration = this.#fallback.unsentGeneration;
    // Admitted before this process ever heard from the store: closed-state calls, so they count
    // in the generation the store is in now, once known.
    if (unsentGeneration === 0 && !this.#owner.known) await this.#owner.learnGeneration();
    if (this.#fallback.unsentGeneration === 0 && !this.#owner.known) {
      this.#health.keep(this); // still unknown: try again when the store answers
      return;
    }
    const taken = this.#fallback.take(this.#owner.generation, this.#o.policy, () => this.#host.jitterMs());
    // What was merged is numbered now, below the floor of the in-doubt batches re-sent with it.
    let low = Infinity;
    for (const batch of taken) if (batch.id !== undefined) low = lowerNumber(low, batch);
    const batches = taken.map((batch) =>
      batch.id !== undefined
        ? batch
        : { ...batch, id: this.nextId(), idFloor: Math.min(this.idFloor(), low) },
    );
    // Written under the generation they were admitted in: if the shared state moved on meanwhile,
    // the store fences them off rather than counting them twice or wrongly.
    await Promise.all(batches.map((batch) => this.write(batch) ?? Promise.resolve()));
  }

  // ---- buffering (flushIntervalMs > 0) ------------------------------------------------------

  buffer(generation: number, outcome: Outcome, slow: boolean): void {
    let buffer = this.#buffer;
    if (buffer !== null && buffer.generation !== generation) {
      void this.#flushBuffer();
      buffer = null;
    }
    if (buffer === null) {
      buffer = emptyBatch(generation);
      this.#buffer = buffer;
      this.#flushTimer = setTimeout(() => void this.#flushBuffer(), this.#o.flushIntervalMs);
      this.#flushTimer.unref?.();
    }
    addOutcome(buffer, outcome, slow);
    // Written at once when this outcome could trip the policy (a success can, under a failure rate).
    const trip = this.#o.policy.trip;
    if (
      outcomesCanTrip(trip, outcome === 'success' ? 1 : 0, outcome === 'failure' ? 1 : 0) &&
      this.#couldTrip(buffer)
    ) {
      void this.#flushBuffer();
    }
  }

  /** Whether the buffered failures, with the counts last seen, could trip the policy: then write now. */
  #couldTrip(buffer: PendingBatch): boolean {
    const seen = this.#owner.counts;
    const successes = seen.successes + buffer.successes;
    const failures = seen.failures + buffer.failures;
    const merged: WindowCounts = {
      successes,
      failures,
      slow: seen.slow + buffer.slow,
      ignored: seen.ignored + buffer.ignored,
      total: successes + failures,
      failureRate: successes + failures === 0 ? 0 : failures / (successes + failures),
      consecutiveFailures:
        buffer.successes > 0 ? buffer.trailingFailures : seen.consecutiveFailures + buffer.failures,
    };
    return this.#o.policy.trip.kind === 'custom'
      ? this.#host.customTrips(merged)
      : shouldTrip(this.#o.policy.trip, merged);
  }

  #flushBuffer(): Promise<void> | undefined {
    const buffer = this.#buffer;
    if (buffer === null) return undefined;
    this.#buffer = null;
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    const written = this.write({
      ...buffer,
      probes: NO_PROBES,
      random: Math.random(),
      jitterMs: outcomesCanTrip(this.#o.policy.trip, buffer.successes, buffer.failures)
        ? this.#host.jitterMs()
        : 0,
      id: this.nextId(),
      idFloor: this.idFloor(),
    });
    if (written === undefined) return undefined;
    const flushing = written.finally(() => {
      if (this.#flushing === flushing) this.#flushing = null;
    });
    this.#flushing = flushing;
    return flushing;
  }

  /** Writes buffered outcomes now, and those kept while the store did not answer. */
  async flush(): Promise<void> {
    this.sendCarried();
    if (this.#background.size > 0) await Promise.all(this.#background);
    if (this.#flushing !== null) await this.#flushing;
    const pending = this.#flushBuffer();
    if (pending !== undefined) await pending;
    // A re-send already under way took what was kept when it started: what was kept since (an
    // outcome of a call admitted locally, a batch it had to keep again) waits for the next one.
    // So after it, one more: under `drain` that one tries the store even while it is left alone.
    if (this.#resending !== null) await this.#resending;
    await this.resendKept();
  }

  /**
   * For `close()`: like `flush`, but tries the store even while it is being left alone after a
   * failure (one attempt per batch, each bounded by the store timeout).
   */
  async drain(deadline: number): Promise<void> {
    this.#draining = true;
    try {
      await this.flush();
      // Writes that timed out may still be answered: wait for them, then write what their
      // failures gave back, until nothing is in flight or `deadline` (performance.now()) passes.
      while (this.#writing.size > 0 && performance.now() < deadline) {
        await Promise.allSettled(this.#writing.values());
        await new Promise((resolve) => setTimeout(resolve, 20));
        await this.flush();
      }
    } finally {
      this.#draining = false;
    }
  }

  /**
   * What is buffered or kept and not confirmed by the store, or null when nothing is: `unwritten`
   * never reached it (buffered, or kept while it did not answer), `inDoubt` was sent and got no
   * answer (a write in flight, or one whose reply was lost), so the store may hold it already.
   */
  unwritten(): BreakerLeftovers | null {
    const kept = this.#fallback.keptCounts();
    const unwritten = sumCounts([
      kept?.unsent ?? null,
      countsOf(this.#buffer === null ? [] : [this.#buffer]),
      countsOf(this.#carried === null ? [] : [this.#carried]),
    ]);
    const inDoubt = sumCounts([kept?.inDoubt ?? null, countsOf([...this.#writing.keys()])]);
    if (unwritten === null && inDoubt === null) return null;
    return {
      unwritten: unwritten === null ? null : { name: this.#host.name, ...unwritten },
      inDoubt: inDoubt === null ? null : { name: this.#host.name, ...inDoubt },
    };
  }

  /** True while outcomes are buffered, being flushed or written in the background, or kept. */
  get holding(): boolean {
    return (
      this.#buffer !== null ||
      this.#carried !== null ||
      this.#flushing !== null ||
      this.#background.size > 0 ||
      this.#fallback.holdsOutcomes
    );
  }
}

/** The lower of `floor` and `batch`'s number (a batch not numbered by a writer leaves it). */
function lowerNumber(floor: number, batch: OutcomeBatch): number {
  const n = batchNumber(batch.id);
  return n < floor ? n : floor;
}

/** Sums outcome counts (null parts left out), or null when every part is null. */
function sumCounts(parts: ReadonlyArray<KeptCounts | null>): KeptCounts | null {
  let sum: { successes: number; failures: number; ignored: number } | null = null;
  for (const part of parts) {
    if (part === null) continue;
    sum ??= { successes: 0, failures: 0, ignored: 0 };
    sum.successes += part.successes;
    sum.failures += part.failures;
    sum.ignored += part.ignored;
  }
  return sum;
}
