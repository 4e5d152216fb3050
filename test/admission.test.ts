import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Admitter } from '../src/admission.js';
import type { Admission, AdmitterOwner, Admitted } from '../src/admission.js';
import { ZERO_COUNTS } from '../src/coordination.js';
import type { CoordinationHost } from '../src/coordination.js';
import type {
  AcquireResult,
  BreakerState,
  Override,
  RejectReason,
  UpdateResult,
  WindowCounts,
} from '../src/core/types.js';
import { isCircuitOpenError, rejection } from '../src/errors.js';
import type { CircuitOpenError } from '../src/errors.js';
import { LocalFallback } from '../src/fallback.js';
import { consecutiveFailures } from '../src/index.js';
import type { BreakerOptions, Store } from '../src/index.js';
import { resolveOptions } from '../src/options.js';
import { OutcomeWriter } from '../src/outcome-writer.js';
import type { WriterOwner } from '../src/outcome-writer.js';
import { StoreHealth } from '../src/store-health.js';
import { MemoryStore } from '../src/stores/memory.js';
import { outcomes } from '../src/testing/conformance.js';
import { ManualClock } from '../src/testing/manual-clock.js';
import { LocalThrottle } from '../src/throttle.js';

// Admission on its own (src/admission.ts): an `Admitter` over a MemoryStore with a manual clock,
// its coordination replaced by an owner that holds a view and records what it was told. How
// admission plays with a whole breaker is in test/coordination.test.ts and test/breaker.test.ts.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The coordination an `Admitter` (and its writer) sees: a plain view, and what it was told. */
class Owner implements AdmitterOwner, WriterOwner {
  state: BreakerState = 'closed';
  override: Override | null = null;
  known = false;
  generation = 0;
  counts: WindowCounts = ZERO_COUNTS;
  openUntil = 0;
  rampUntil = 0;
  viewAt = -Infinity;
  localOpenUntil = 0;
  readonly absorbed: AcquireResult[] = [];
  readonly updated: UpdateResult[] = [];
  readonly failed: string[] = [];

  constructor(
    readonly clock: ManualClock,
    readonly host: CoordinationHost,
  ) {}

  localOpen(now: number): CircuitOpenError | null {
    if (now < this.localOpenUntil) return this.host.rejected('local-open', this.localOpenUntil - now);
    this.localOpenUntil = 0;
    return null;
  }
  own<T>(call: () => T): T {
    return call();
  }
  storeFailed(operation: string): void {
    this.failed.push(operation);
  }
  storeTimeoutMs(): number {
    return 20;
  }
  storeAnswered(): void {}
  absorbAcquire(result: AcquireResult): void {
    this.absorbed.push(result);
    this.known = true;
    this.generation = result.generation;
    this.state = result.state;
    this.override = result.override;
    this.viewAt = this.clock.now();
  }
  applyUpdate(result: UpdateResult): void {
    this.updated.push(result);
  }
  logLocalTransition(): void {}
  writeAnswered(): undefined {
    return undefined;
  }
  writeAnsweredLate(): void {}
  async learnGeneration(): Promise<void> {}
  throttleRate(): number {
    return 0;
  }
}

/** `memory` as a plain store (no in-process path), counting acquires; `onAcquire` runs after each. */
function counting(memory: MemoryStore, acquire?: Store['acquire']) {
  const calls = { acquires: 0, onAcquire: null as (() => void) | null };
  const store: Store = {
    limitsConcurrency: true,
    acquire: (key, policy) => {
      calls.acquires += 1;
      const answer = acquire === undefined ? memory.acquire(key, policy) : acquire(key, policy);
      calls.onAcquire?.();
      return answer;
    },
    record: (key, policy, batch) => memory.record(key, policy, batch),
    inspect: (key, policy) => memory.inspect(key, policy),
    force: (key, policy, override) => memory.force(key, policy, override),
    list: (prefix, cursor) => memory.list(prefix, cursor),
  };
  return { store, calls };
}

/** An admitter for breaker `dep` over `memory` (behind `counting`), with its owner and host. */
function admitterOver(options: BreakerOptions = {}, acquire?: Store['acquire']) {
  const clock = new ManualClock();
  const memory = new MemoryStore({ clock });
  const { store, calls } = counting(memory, acquire);
  const o = resolveOptions({
    store,
    clock,
    trip: consecutiveFailures(1),
    openMs: 1_000,
    jitter: 0,
    recovery: false,
    ...options,
  });
  const host = {
    name: 'dep',
    rejected: (reason: RejectReason, retryAfterMs: number) => rejection('dep', reason, retryAfterMs),
    emitTransition: () => undefined,
    startTime: () => 0,
    jitterMs: () => 0,
    customTrips: () => false,
  } as unknown as CoordinationHost;
  const owner = new Owner(clock, host);
  const health = new StoreHealth();
  const fallback = new LocalFallback();
  const writer = new OutcomeWriter(owner, host, o, health, fallback);
  const throttle = o.throttle === null ? null : new LocalThrottle(o.throttle);
  const admitter = new Admitter(owner, host, o, health, fallback, writer, throttle);
  return { admitter, owner, memory, clock, calls, policy: o.policy };
}

function admitted(answer: Admitted | Promise<Admitted>): Admission {
  assert.ok(!(answer instanceof Promise), 'answered at once');
  assert.ok(!isCircuitOpenError(answer), `admitted, not rejected (${String((answer as Error).message)})`);
  return answer;
}

function rejected(answer: Admitted | Promise<Admitted>): CircuitOpenError {
  assert.ok(!(answer instanceof Promise), 'answered at once');
  assert.ok(isCircuitOpenError(answer), 'rejected');
  return answer;
}

describe('Admitter', () => {
  it('a known open turns calls away without asking the store, and is forgotten once it has passed', () => {
    const { admitter, owner, clock, calls } = admitterOver();
    owner.openUntil = clock.now() + 500;
    const early = rejected(admitter.admit());
    assert.equal(early.reason, 'open');
    assert.equal(early.retryAfterMs, 500);
    assert.equal(calls.acquires, 0, 'no store call while known open');
    clock.advance(500);
    admitted(admitter.admit());
    assert.equal(owner.openUntil, 0, 'the passed open is forgotten');
    assert.equal(calls.acquires, 1);
  });

  it('the fresh local view admits without the store; staleness, a local open or a ramp stop it', () => {
    const { admitter, owner, clock, calls } = admitterOver({ maxStalenessMs: 1_000 });
    assert.equal(admitter.admitFromView(), -1, 'not before the store has answered');
    admitted(admitter.admit());
    assert.equal(calls.acquires, 1);
    assert.equal(admitter.admitFromView(), owner.generation);
    clock.advance(1_000);
    admitted(admitter.admit());
    assert.equal(calls.acquires, 1, 'a view exactly maxStalenessMs old still admits');
    clock.advance(1);
    assert.equal(admitter.admitFromView(), -1, 'stale');
    admitted(admitter.admit());
    assert.equal(calls.acquires, 2, 'a stale view asks the store');
    owner.localOpenUntil = clock.now() + 100;
    assert.equal(admitter.admitFromView(), -1, 'open in this process alone (quorum)');
    assert.equal(rejected(admitter.admit()).reason, 'local-open');
    owner.localOpenUntil = 0;
    owner.rampUntil = clock.now() + 100;
    assert.equal(admitter.admitFromView(), -1, 'a recovery ramp is running');

    const limited = admitterOver({ maxStalenessMs: 1_000, maxConcurrent: 2 });
    admitted(limited.admitter.admit());
    assert.equal(limited.admitter.admitFromView(), -1, 'with a concurrency limit every call takes a slot');
    admitted(limited.admitter.admit());
    assert.equal(limited.calls.acquires, 2);
  });

  it('on the system clock the view reads Date.now() once per 32 calls in a turn, and anew after it', async () => {
    // `Date.now()` costs tens of nanoseconds on a virtual machine: read on every call, it was most
    // of what the local-first closed path cost over the in-process one.
    const realNow = Date.now;
    let reads = 0;
    let now = 1_000_000;
    Date.now = () => {
      reads += 1;
      return now;
    };
    try {
      const { admitter, owner } = admitterOver({ maxStalenessMs: 1_000, clock: undefined });
      await new Promise((resolve) => setImmediate(resolve)); // no sample from before the stub
      owner.known = true;
      owner.generation = 3;
      owner.viewAt = now;
      reads = 0;
      for (let i = 0; i < 64; i++) assert.equal(admitter.admitFromView(), 3);
      assert.equal(reads, 2, 'one read per 32 calls');
      now += 1_001;
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(admitter.admitFromView(), -1, 'stale once time has moved and the turn has ended');
    } finally {
      Date.now = realNow;
    }
  });

  it('the recovery ramp turns every call away at the close, and none once it is over', () => {
    const { admitter, owner, clock, calls } = admitterOver({ recovery: { rampMs: 1_000 } });
    const now = clock.now();
    admitter.learnClose(now, now);
    assert.equal(owner.rampUntil, now + 1_000);
    for (let i = 0; i < 20; i++) {
      const turnedAway = rejected(admitter.admit());
      assert.equal(turnedAway.reason, 'recovering');
      assert.ok(turnedAway.retryAfterMs >= 1 && turnedAway.retryAfterMs <= 1_000, 'within the ramp');
    }
    assert.equal(calls.acquires, 0);
    clock.advance(1_000);
    admitted(admitter.admit());
    assert.equal(owner.rampUntil, 0, 'the ramp is over');
    // A close learnt late (store's time): the ramp runs from the close, not from when it was learnt.
    admitter.learnClose(now, now + 400);
    assert.equal(owner.rampUntil, clock.now() + 600);
    admitter.learnClose(now, now + 1_000);
    assert.equal(owner.rampUntil, 0, 'a close a whole ramp ago starts none');
  });

  it('a half-open-full hint is 1 s before a probe was timed, then twice the probes seen here', async () => {
    const { admitter, memory, clock, policy } = admitterOver({ probeLeaseMs: 30_000 });
    memory.record('dep', policy, outcomes(0, { failures: 1 }));
    clock.advance(1_000);
    const probe = admitted(admitter.admit());
    assert.notEqual(probe.lease, null, 'a probe');
    assert.equal(rejected(admitter.admit()).retryAfterMs, 1_000);
    await sleep(40);
    admitter.ended(probe, 'ignored');
    assert.equal(
      rejected(admitter.admit()).retryAfterMs,
      1_000,
      'an ignored probe says nothing of durations',
    );
    admitter.ended(probe, 'success');
    const hint = rejected(admitter.admit()).retryAfterMs;
    assert.ok(hint >= 80 && hint < 1_000, `twice the probe's ~40 ms, got ${hint}`);
  });

  it('a queued call gives up at queueMs with the concurrency-limit hint', async () => {
    const { admitter, calls } = admitterOver({ maxConcurrent: 1, queueMs: 40 });
    const first = admitted(admitter.admit());
    assert.notEqual(first.slot, null);
    const second = admitter.admit();
    assert.ok(second instanceof Promise, 'it queues');
    const answer = await second;
    assert.ok(isCircuitOpenError(answer));
    assert.equal(answer.reason, 'concurrency-limit');
    assert.equal(answer.retryAfterMs, 100, 'no call held a slot here yet: 100 ms');
    assert.ok(calls.acquires > 2, 'it asked again while it waited');
  });

  it('a queued call asks again at once when this process gives a slot back', async (t) => {
    // Timers are frozen: a pause never ends by itself, so only the wake can let the call ask again.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { admitter, memory, policy, calls } = admitterOver({ maxConcurrent: 1, queueMs: 5_000 });
    const first = admitted(admitter.admit());
    let second: Admitted | null = null;
    void Promise.resolve(admitter.admit()).then((answer) => {
      second = answer;
    });
    const turns = async (): Promise<void> => {
      for (let i = 0; i < 20 && second === null; i++) await new Promise((resolve) => setImmediate(resolve));
    };
    await turns();
    assert.equal(second, null, 'every slot taken: the call waits in its pause');
    const asked = calls.acquires;
    memory.record('dep', policy, { ...outcomes(first.generation, { successes: 1 }), slots: [first.slot!] });
    admitter.slotGivenBack();
    await turns();
    assert.ok(second !== null, 'asked at once, not after its pause');
    assert.ok(!isCircuitOpenError(second));
    assert.notEqual((second as Admission).slot, null);
    assert.equal(calls.acquires, asked + 1);
  });

  it('an acquire answered after its timeout gives back the probe lease nobody will use', async () => {
    const late: { answer: (() => void) | null } = { answer: null };
    const { admitter, owner, memory, clock, policy } = admitterOver(
      { onStoreFailure: 'reject', probeLeaseMs: 30_000 },
      (key, p) =>
        new Promise<AcquireResult>((resolve) => {
          late.answer = () => resolve(memory.acquire(key, p));
        }),
    );
    memory.record('dep', policy, outcomes(0, { failures: 1 }));
    clock.advance(1_000);
    const answer = await admitter.admit();
    assert.ok(isCircuitOpenError(answer), 'the store did not answer in time: rejected');
    assert.deepEqual(owner.failed, ['acquire']);
    late.answer!();
    await sleep(5);
    assert.equal(owner.absorbed.length, 1, 'the late answer is learnt');
    assert.notEqual(owner.absorbed[0]!.lease, null, 'it was a probe');
    assert.equal(owner.updated.length, 1, 'the lease was given back');
    assert.notEqual(memory.acquire('dep', policy).lease, null, 'the next caller gets the probe');
  });

  it('a store that throws on acquire is reported, and the call is admitted by the local breaker', () => {
    const { admitter, owner } = admitterOver({ onStoreFailure: 'local' }, () => {
      throw new Error('connection refused');
    });
    const admission = admitted(admitter.admit());
    assert.equal(admission.local, true);
    assert.deepEqual(owner.failed, ['acquire']);
  });
});
