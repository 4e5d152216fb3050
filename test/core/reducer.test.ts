import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import * as reducer from '../../src/core/reducer.js';
import type { BreakerRecord, Outcome, OutcomeBatch, Override } from '../../src/core/types.js';
import { resolveOptions } from '../../src/options.js';
import { consecutiveFailures } from '../../src/index.js';
import { ManualClock } from '../../src/testing/manual-clock.js';

// The reducer, step by step with a manual clock (plain numbers), as tables: each case is a list
// of steps and what the record must look like after each.

const policy = resolveOptions({
  trip: consecutiveFailures(2),
  openMs: 1_000,
  backoff: { multiplier: 2, maxOpenMs: 3_000 },
  jitter: 0.5,
  halfOpenMaxCalls: 1,
  successThreshold: 1,
  probeLeaseMs: 500,
}).policy;

type Step =
  | { at: number; acquire: string; expect: { admitted: boolean; reason?: string; lease?: boolean } }
  | { at: number; settle: string; outcome: Outcome; random?: number; jitterMs?: number; stale?: boolean }
  | { at: number; force: Override | null };

interface Case {
  readonly name: string;
  readonly steps: ReadonlyArray<Step & { then?: Partial<BreakerRecord> }>;
}

const cases: Case[] = [
  {
    name: 'two failures in a row open it; the open period is openMs plus jitter',
    steps: [
      { at: 0, acquire: 'a', expect: { admitted: true } },
      { at: 0, acquire: 'b', expect: { admitted: true } },
      { at: 10, settle: 'a', outcome: 'failure', then: { state: 'closed', consecutiveFailures: 1 } },
      {
        at: 20,
        settle: 'b',
        outcome: 'failure',
        random: 0.5,
        then: { state: 'open', generation: 2, openUntil: 1_270 },
      },
      { at: 1_269, acquire: 'c', expect: { admitted: false, reason: 'open' } },
    ],
  },
  {
    name: 'a success breaks the run of failures; ignored outcomes count nothing',
    steps: [
      { at: 0, acquire: 'a', expect: { admitted: true } },
      { at: 0, acquire: 'b', expect: { admitted: true } },
      { at: 0, acquire: 'c', expect: { admitted: true } },
      { at: 0, acquire: 'd', expect: { admitted: true } },
      { at: 1, settle: 'a', outcome: 'failure', then: { consecutiveFailures: 1 } },
      { at: 2, settle: 'b', outcome: 'ignored', then: { consecutiveFailures: 1, state: 'closed' } },
      { at: 3, settle: 'c', outcome: 'success', then: { consecutiveFailures: 0 } },
      { at: 4, settle: 'd', outcome: 'failure', then: { consecutiveFailures: 1, state: 'closed' } },
    ],
  },
  {
    name: 'after the open period one probe goes through; its success closes it',
    steps: [
      ...opened(),
      {
        at: 1_000,
        acquire: 'p',
        expect: { admitted: true, lease: true },
        then: { state: 'half-open', generation: 3 },
      },
      { at: 1_001, acquire: 'q', expect: { admitted: false, reason: 'half-open-full' } },
      { at: 1_100, settle: 'p', outcome: 'success', then: { state: 'closed', generation: 4, reopens: 0 } },
    ],
  },
  {
    name: 'a failed probe re-opens with backoff, capped at maxOpenMs',
    steps: [
      ...opened(),
      { at: 1_000, acquire: 'p1', expect: { admitted: true, lease: true } },
      { at: 1_000, settle: 'p1', outcome: 'failure', then: { state: 'open', reopens: 1, openUntil: 3_000 } },
      { at: 3_000, acquire: 'p2', expect: { admitted: true, lease: true } },
      { at: 3_000, settle: 'p2', outcome: 'failure', then: { reopens: 2, openUntil: 6_000 } },
      { at: 6_000, acquire: 'p3', expect: { admitted: true, lease: true } },
      { at: 6_000, settle: 'p3', outcome: 'failure', jitterMs: 7, then: { reopens: 3, openUntil: 9_007 } },
    ],
  },
  {
    name: "a crashed prober's lease expires and another probe gets through; its late result is ignored",
    steps: [
      ...opened(),
      { at: 1_000, acquire: 'crashed', expect: { admitted: true, lease: true } },
      { at: 1_499, acquire: 'x', expect: { admitted: false, reason: 'half-open-full' } },
      { at: 1_500, acquire: 'next', expect: { admitted: true, lease: true } },
      { at: 1_600, settle: 'crashed', outcome: 'failure', then: { state: 'half-open' } },
      { at: 1_700, settle: 'next', outcome: 'success', then: { state: 'closed' } },
    ],
  },
  {
    name: 'a late result from an old generation changes nothing',
    steps: [
      { at: 0, acquire: 'old', expect: { admitted: true } },
      ...opened(),
      { at: 50, settle: 'old', outcome: 'success', stale: true, then: { state: 'open', generation: 2 } },
      { at: 1_000, acquire: 'p', expect: { admitted: true, lease: true } },
      {
        at: 1_000,
        settle: 'old',
        outcome: 'failure',
        stale: true,
        then: { state: 'half-open', generation: 3 },
      },
    ],
  },
  {
    name: 'forced states: forced-open rejects, forced-closed admits and counts nothing, clearing restores',
    steps: [
      { at: 0, force: 'forced-open', then: { override: 'forced-open', generation: 2 } },
      { at: 1, acquire: 'a', expect: { admitted: false, reason: 'forced-open' } },
      { at: 2, force: 'forced-closed', then: { override: 'forced-closed', generation: 3 } },
      { at: 3, acquire: 'b', expect: { admitted: true } },
      { at: 3, acquire: 'c', expect: { admitted: true } },
      { at: 4, settle: 'b', outcome: 'failure', stale: true },
      {
        at: 4,
        settle: 'c',
        outcome: 'failure',
        stale: true,
        then: { state: 'closed', consecutiveFailures: 0 },
      },
      { at: 5, force: null, then: { override: null, generation: 4 } },
    ],
  },
  {
    name: 'metrics-only counts and opens but admits, even while open',
    steps: [
      { at: 0, force: 'metrics-only' },
      { at: 0, acquire: 'a', expect: { admitted: true } },
      { at: 0, acquire: 'b', expect: { admitted: true } },
      { at: 1, settle: 'a', outcome: 'failure' },
      { at: 1, settle: 'b', outcome: 'failure', then: { state: 'open', override: 'metrics-only' } },
      { at: 2, acquire: 'c', expect: { admitted: true, lease: false } },
    ],
  },
];

/** Two failures at time 0, jitter 0: open from 0 to 1000 at generation 2. */
function opened(): Case['steps'] {
  return [
    { at: 0, acquire: 'f1', expect: { admitted: true } },
    { at: 0, acquire: 'f2', expect: { admitted: true } },
    { at: 0, settle: 'f1', outcome: 'failure' },
    { at: 0, settle: 'f2', outcome: 'failure', random: 0, then: { state: 'open', openUntil: 1_000 } },
  ];
}

describe('the reducer, step by step', () => {
  for (const { name, steps } of cases) {
    it(name, () => {
      const record = reducer.emptyRecord();
      const permits = new Map<string, { generation: number; lease: string | null }>();
      for (const [i, step] of steps.entries()) {
        const where = `step ${i} at ${step.at}`;
        if ('acquire' in step) {
          const result = reducer.acquire(record, policy, step.at, `lease-${step.acquire}`);
          assert.equal(result.admitted, step.expect.admitted, where);
          if (step.expect.reason !== undefined) assert.equal(result.reason, step.expect.reason, where);
          if (step.expect.lease !== undefined) assert.equal(result.lease !== null, step.expect.lease, where);
          if (result.admitted)
            permits.set(step.acquire, { generation: result.generation, lease: result.lease });
        } else if ('settle' in step) {
          const permit = permits.get(step.settle)!;
          const counted = permit.lease === null;
          const failures = counted && step.outcome === 'failure' ? 1 : 0;
          const result = reducer.record(record, policy, step.at, {
            generation: permit.generation,
            successes: counted && step.outcome === 'success' ? 1 : 0,
            failures,
            trailingFailures: failures,
            slow: 0,
            ignored: counted && step.outcome === 'ignored' ? 1 : 0,
            probes: permit.lease === null ? [] : [{ lease: permit.lease, outcome: step.outcome }],
            random: step.random ?? 0,
            jitterMs: step.jitterMs ?? 0,
          });
          assert.equal(result.stale, step.stale ?? false, where);
        } else {
          reducer.force(record, policy, step.at, step.force);
        }
        for (const [field, value] of Object.entries(step.then ?? {})) {
          assert.deepEqual(record[field as keyof BreakerRecord], value, `${where}: ${field}`);
        }
      }
    });
  }

  it('isValidRecord refuses records of the wrong shape', () => {
    const good = reducer.emptyRecord();
    assert.equal(reducer.isValidRecord(good), true);
    for (const bad of [
      null,
      'record',
      { ...good, schema: 2 },
      { ...good, state: 'ajar' },
      { ...good, override: 'forced-sideways' },
      { ...good, generation: 0 },
      { ...good, openUntil: -1 },
      { ...good, reopens: 1.5 },
      { ...good, leases: [{ id: 7, expiresAt: 1 }] },
      { ...good, buckets: [{ index: 0, successes: -1, failures: 0, slow: 0, ignored: 0 }] },
    ]) {
      assert.equal(reducer.isValidRecord(bad), false, JSON.stringify(bad));
    }
  });
});

describe('reducer.tripIfDue (a store that counted with its own atomic update)', () => {
  const failuresAt = (now: number, failures: number): BreakerRecord => {
    const record = reducer.emptyRecord();
    record.buckets = [
      { index: Math.floor(now / policy.bucketMs), successes: 0, failures, slow: 0, ignored: 0 },
    ];
    record.consecutiveFailures = failures;
    return record;
  };

  it('opens a closed breaker whose counts trip the policy, once', () => {
    const record = failuresAt(1_000, 2);
    const result = reducer.tripIfDue(record, policy, 1_000, 1, 0);
    assert.equal(result.stale, false);
    assert.deepEqual(result.transition, { from: 'closed', to: 'open', generation: 2 });
    assert.equal(record.openUntil, 2_000);
    const again = reducer.tripIfDue(record, policy, 1_000, 1, 0);
    assert.equal(again.stale, true, 'the generation moved on');
    assert.equal(again.transition, null);
  });

  it('leaves one whose counts do not trip it, or that an override holds, alone', () => {
    const below = failuresAt(1_000, 1);
    assert.equal(reducer.tripIfDue(below, policy, 1_000, 1, 0).transition, null);
    assert.equal(below.state, 'closed');
    const forced = failuresAt(1_000, 2);
    forced.override = 'forced-closed';
    assert.equal(reducer.tripIfDue(forced, policy, 1_000, 1, 0).stale, true);
    assert.equal(forced.state, 'closed');
  });
});

describe('reducer.reset (an operator starts a breaker afresh)', () => {
  const probing = resolveOptions({
    trip: consecutiveFailures(2),
    openMs: 1_000,
    backoff: { multiplier: 2, maxOpenMs: 8_000 },
    jitter: 0,
    halfOpenMaxCalls: 2,
    successThreshold: 2,
    probeLeaseMs: 500,
  }).policy;

  const batch = (generation: number, counts: Partial<OutcomeBatch> = {}): OutcomeBatch => ({
    generation,
    successes: 0,
    failures: 0,
    trailingFailures: counts.failures ?? 0,
    slow: 0,
    ignored: 0,
    probes: [],
    random: 0,
    ...counts,
  });

  /** A record opened by two failures at the clock's time. */
  const opened = (clock: ManualClock): BreakerRecord => {
    const record = reducer.emptyRecord();
    const { generation } = reducer.acquire(record, probing, clock.now(), 'a');
    reducer.record(record, probing, clock.now(), batch(generation, { failures: 2 }));
    assert.equal(record.state, 'open');
    return record;
  };

  it('forgets window counts and consecutive failures of a closed breaker, without a transition', () => {
    const clock = new ManualClock(10_000);
    const record = reducer.emptyRecord();
    const { generation } = reducer.acquire(record, probing, clock.now(), 'a');
    reducer.record(
      record,
      probing,
      clock.now(),
      batch(generation, { successes: 3, failures: 1, trailingFailures: 1, slow: 2, ignored: 4 }),
    );
    clock.advance(100);
    const result = reducer.reset(record, probing, clock.now());
    assert.equal(result.stale, false);
    assert.equal(result.transition, null, 'closed stays closed: nothing for callers to learn');
    assert.equal(result.snapshot.generation, generation + 1);
    assert.equal(result.snapshot.state, 'closed');
    assert.equal(result.snapshot.now, clock.now());
    assert.deepEqual(result.snapshot.counts, {
      successes: 0,
      failures: 0,
      slow: 0,
      ignored: 0,
      total: 0,
      failureRate: 0,
      consecutiveFailures: 0,
    });
    assert.deepEqual(record.buckets, []);
    assert.equal(record.consecutiveFailures, 0);
  });

  it('outcomes of calls admitted before the reset are stale; it takes a fresh run to trip', () => {
    const clock = new ManualClock(10_000);
    const record = reducer.emptyRecord();
    const before = reducer.acquire(record, probing, clock.now(), 'a');
    reducer.record(record, probing, clock.now(), batch(before.generation, { failures: 1 }));
    reducer.reset(record, probing, clock.now());
    clock.advance(10);
    const late = reducer.record(record, probing, clock.now(), batch(before.generation, { failures: 1 }));
    assert.equal(late.stale, true);
    assert.equal(record.state, 'closed');
    assert.equal(record.consecutiveFailures, 0);
    const after = reducer.acquire(record, probing, clock.now(), 'b');
    assert.ok(after.generation > before.generation);
    assert.equal(
      reducer.record(record, probing, clock.now(), batch(after.generation, { failures: 1 })).snapshot.state,
      'closed',
      'the failure before the reset no longer counts toward the run',
    );
    const second = reducer.record(record, probing, clock.now(), batch(after.generation, { failures: 1 }));
    assert.equal(second.snapshot.state, 'open');
  });

  it('closes an open breaker, reports open -> closed, and forgets the backoff', () => {
    const clock = new ManualClock(10_000);
    const record = opened(clock);
    // A failed probe: re-opened with backoff (reopens 1, a 2 s period).
    clock.advance(1_000);
    const probe = reducer.acquire(record, probing, clock.now(), 'p');
    reducer.record(
      record,
      probing,
      clock.now(),
      batch(probe.generation, { probes: [{ lease: 'p', outcome: 'failure' }] }),
    );
    assert.equal(record.reopens, 1);
    const generation = record.generation;
    clock.advance(300);
    const result = reducer.reset(record, probing, clock.now());
    assert.deepEqual(result.transition, { from: 'open', to: 'closed', generation: generation + 1 });
    assert.equal(result.snapshot.state, 'closed');
    assert.equal(result.snapshot.openUntil, 0);
    assert.equal(result.snapshot.retryAfterMs, 0);
    assert.equal(result.snapshot.reopens, 0);
    const admitted = reducer.acquire(record, probing, clock.now(), 'c');
    assert.equal(admitted.admitted, true);
    assert.equal(admitted.lease, null);
    // The next open is a first open again: openMs, not the backed-off period.
    reducer.record(record, probing, clock.now(), batch(admitted.generation, { failures: 2 }));
    assert.equal(record.openUntil - clock.now(), 1_000);
  });

  it('drops the probe leases and probe successes of a half-open breaker; late probe results are stale', () => {
    const clock = new ManualClock(10_000);
    const record = opened(clock);
    clock.advance(1_000);
    const first = reducer.acquire(record, probing, clock.now(), 'p1');
    const second = reducer.acquire(record, probing, clock.now(), 'p2');
    reducer.record(
      record,
      probing,
      clock.now(),
      batch(first.generation, { probes: [{ lease: 'p1', outcome: 'success' }] }),
    );
    assert.equal(record.probeSuccesses, 1);
    assert.equal(record.leases.length, 1);
    const result = reducer.reset(record, probing, clock.now());
    assert.equal(result.transition?.from, 'half-open');
    assert.equal(result.transition?.to, 'closed');
    assert.equal(result.snapshot.activeProbes, 0);
    assert.equal(result.snapshot.probeSuccesses, 0);
    assert.deepEqual(record.leases, []);
    const late = reducer.record(
      record,
      probing,
      clock.now(),
      batch(second.generation, { probes: [{ lease: 'p2', outcome: 'failure' }] }),
    );
    assert.equal(late.stale, true);
    assert.equal(record.state, 'closed');
  });

  it('keeps the override; reports a transition only when the state callers see changes', () => {
    const clock = new ManualClock(10_000);
    const forced = opened(clock);
    reducer.force(forced, probing, clock.now(), 'forced-open');
    const generation = forced.generation;
    const hidden = reducer.reset(forced, probing, clock.now());
    assert.equal(hidden.snapshot.override, 'forced-open');
    assert.equal(hidden.snapshot.state, 'closed', 'the computed state under the override is reset');
    assert.equal(hidden.snapshot.circuitState, 'forced-open');
    assert.equal(hidden.transition, null, 'callers still see forced-open');
    assert.equal(hidden.snapshot.generation, generation + 1);
    assert.equal(reducer.acquire(forced, probing, clock.now(), 'x').reason, 'forced-open');

    const watched = opened(clock);
    reducer.force(watched, probing, clock.now(), 'metrics-only');
    const shown = reducer.reset(watched, probing, clock.now());
    assert.equal(shown.snapshot.override, 'metrics-only');
    assert.deepEqual(shown.transition, { from: 'open', to: 'closed', generation: watched.generation });
  });

  it('every reset moves the generation on, even of a fresh record', () => {
    const clock = new ManualClock(10_000);
    const record = reducer.emptyRecord(reducer.initialGeneration(clock.now()));
    const seen = [record.generation];
    for (let i = 0; i < 3; i++) seen.push(reducer.reset(record, probing, clock.now()).snapshot.generation);
    assert.deepEqual(
      seen.map((g) => g - seen[0]!),
      [0, 1, 2, 3],
    );
  });
});
