import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import * as reducer from '../../src/core/reducer.js';
import type { BreakerRecord, OutcomeBatch } from '../../src/core/types.js';
import { consecutiveFailures } from '../../src/index.js';
import { resolveOptions } from '../../src/options.js';
import { outcomes } from '../../src/testing/conformance.js';
import { ManualClock } from '../../src/testing/manual-clock.js';

// The concurrency limit in the reducer (the spec every store follows), step by step on a manual
// clock: slots taken by acquire, given back by record whatever the generation, expired by time.

const T0 = 1_700_000_000_000;
const policyOf = (more: Parameters<typeof resolveOptions>[0] = {}) =>
  resolveOptions({
    trip: consecutiveFailures(2),
    openMs: 1_000,
    jitter: 0,
    halfOpenMaxCalls: 2,
    probeLeaseMs: 500,
    maxConcurrent: 2,
    concurrencyLeaseMs: 3_000,
    ...more,
  }).policy;

function fresh(clock: ManualClock): BreakerRecord {
  return reducer.emptyRecord(reducer.initialGeneration(clock.now()));
}

let ids = 0;
const acquire = (record: BreakerRecord, policy = policyOf(), now = T0) =>
  reducer.acquire(record, policy, now, `id-${++ids}`);

const releasing = (generation: number, slots: Array<string | null | undefined>, more = {}): OutcomeBatch => ({
  ...outcomes(generation, more),
  slots: slots.map((slot) => {
    assert.ok(typeof slot === 'string');
    return slot;
  }),
});

describe('reducer: concurrency slots (maxConcurrent)', () => {
  it('admits maxConcurrent calls with a slot each, then rejects until the oldest expires', () => {
    const clock = new ManualClock(T0);
    const policy = policyOf();
    const record = fresh(clock);
    const a = acquire(record, policy, T0);
    clock.advance(1_000);
    const b = acquire(record, policy, clock.now());
    assert.equal(a.admitted && b.admitted, true);
    assert.notEqual(a.slot, b.slot);
    assert.deepEqual(
      record.slots?.map((s) => s.expiresAt),
      [T0 + 3_000, T0 + 4_000],
    );
    clock.advance(500);
    const full = acquire(record, policy, clock.now());
    assert.deepEqual(
      { admitted: full.admitted, reason: full.reason, retryAfterMs: full.retryAfterMs, slot: full.slot },
      { admitted: false, reason: 'concurrency-limit', retryAfterMs: 1_500, slot: null },
    );
    assert.equal(reducer.snapshot(record, policy, clock.now()).activeSlots, 2);
    // A slot expiring now has expired: a's goes to the next caller at T0 + 3000, not a ms sooner.
    assert.equal(acquire(record, policy, T0 + 2_999).admitted, false);
    const c = acquire(record, policy, T0 + 3_000);
    assert.equal(c.admitted, true);
    assert.equal(reducer.snapshot(record, policy, T0 + 3_000).activeSlots, 2);
  });

  it('an outcome gives its slot back: counted, a success that resets nothing, a stale one, one forced-closed', () => {
    const clock = new ManualClock(T0);
    const policy = policyOf({ maxConcurrent: 1 });
    const record = fresh(clock);
    const take = () => {
      const got = acquire(record, policy, clock.now());
      assert.equal(got.admitted, true);
      return got;
    };
    let a = take();
    reducer.record(record, policy, T0, releasing(a.generation, [a.slot], { failures: 1 }));
    assert.equal(record.consecutiveFailures, 1);
    a = take();
    // resetRun (what a shared store runs for a batch that only resets a run) frees it too.
    assert.equal(reducer.resetsOnly(policy, releasing(a.generation, [a.slot], { successes: 1 })), true);
    reducer.resetRun(record, policy, T0, releasing(a.generation, [a.slot], { successes: 1 }));
    assert.equal(record.consecutiveFailures, 0);
    a = take();
    const stale = reducer.record(record, policy, T0, releasing(a.generation - 1, [a.slot], { failures: 9 }));
    assert.equal(stale.stale, true);
    assert.equal(stale.snapshot.counts.failures, 1, 'a stale batch counts nothing');
    assert.equal(stale.snapshot.activeSlots, 0, '... and still gives its slot back');
    a = take();
    reducer.force(record, policy, T0, 'forced-closed');
    const fenced = reducer.record(record, policy, T0, releasing(a.generation, [a.slot], { successes: 1 }));
    assert.equal(fenced.stale, true);
    assert.equal(fenced.snapshot.activeSlots, 0);
  });

  it('a batch of slots alone counts nothing (releasesOnly), and slots it does not know free nothing', () => {
    const clock = new ManualClock(T0);
    const policy = policyOf();
    const record = fresh(clock);
    const a = acquire(record, policy, T0);
    acquire(record, policy, T0);
    const bare = releasing(a.generation, ['no-such-slot', a.slot]);
    assert.equal(reducer.releasesOnly(bare), true);
    assert.equal(reducer.releasesOnly(releasing(a.generation, [a.slot], { ignored: 1 })), false);
    assert.equal(reducer.releasesOnly(outcomes(a.generation)), false, 'an empty batch gives nothing back');
    const result = reducer.record(record, policy, T0, bare);
    assert.equal(result.snapshot.activeSlots, 1);
    assert.equal(result.snapshot.counts.total + result.snapshot.counts.ignored, 0);
  });

  it('slots outlive state changes; a half-open probe needs a slot as well as a lease', () => {
    const clock = new ManualClock(T0);
    const policy = policyOf({ maxConcurrent: 1 });
    const record = fresh(clock);
    const running = acquire(record, policy, T0);
    const opened = reducer.record(record, policy, T0, outcomes(running.generation, { failures: 2 }));
    assert.equal(opened.snapshot.state, 'open');
    assert.equal(opened.snapshot.activeSlots, 1, 'the call that was running when it opened still runs');
    const full = acquire(record, policy, T0 + 1_000);
    assert.equal(full.reason, 'concurrency-limit');
    assert.equal(full.state, 'half-open');
    assert.deepEqual(full.transition, {
      from: 'open',
      to: 'half-open',
      generation: opened.snapshot.generation + 1,
    });
    assert.equal(record.leases.length, 0, 'no lease without a slot');
    reducer.record(
      record,
      policy,
      T0 + 1_000,
      releasing(running.generation, [running.slot], { successes: 1 }),
    );
    const probe = acquire(record, policy, T0 + 1_000);
    assert.equal(probe.admitted, true);
    assert.equal(probe.slot, probe.lease, 'one id names the lease and the slot');
    const closed = reducer.record(
      record,
      policy,
      T0 + 1_100,
      releasing(probe.generation, [probe.slot], { probes: [{ lease: probe.lease!, outcome: 'success' }] }),
    );
    assert.equal(closed.snapshot.state, 'closed');
    assert.equal(closed.snapshot.activeSlots, 0);
    // A reset keeps the slots of calls still running.
    const held = acquire(record, policy, T0 + 1_200);
    reducer.reset(record, policy, T0 + 1_200);
    assert.equal(reducer.snapshot(record, policy, T0 + 1_200).activeSlots, 1);
    assert.equal(acquire(record, policy, T0 + 1_200).reason, 'concurrency-limit');
    reducer.record(record, policy, T0 + 1_200, releasing(0, [held.slot]));
  });

  it('half-open-full is said before concurrency-limit when both are reached', () => {
    const clock = new ManualClock(T0);
    const policy = policyOf({ maxConcurrent: 1, halfOpenMaxCalls: 1, probeLeaseMs: 5_000 });
    const record = fresh(clock);
    const failed = acquire(record, policy, T0);
    reducer.record(record, policy, T0, releasing(failed.generation, [failed.slot], { failures: 2 }));
    const probe = acquire(record, policy, T0 + 1_000);
    assert.equal(probe.admitted, true);
    assert.equal(acquire(record, policy, T0 + 1_000).reason, 'half-open-full');
  });

  it('an override does not limit: forced-closed and metrics-only admit without a slot, forced-open rejects', () => {
    const clock = new ManualClock(T0);
    const policy = policyOf({ maxConcurrent: 1 });
    const record = fresh(clock);
    acquire(record, policy, T0);
    for (const override of ['forced-closed', 'metrics-only'] as const) {
      reducer.force(record, policy, T0, override);
      const admitted = acquire(record, policy, T0);
      assert.deepEqual([admitted.admitted, admitted.slot], [true, null], override);
    }
    reducer.force(record, policy, T0, 'forced-open');
    assert.equal(acquire(record, policy, T0).reason, 'forced-open');
    reducer.force(record, policy, T0, null);
    assert.equal(acquire(record, policy, T0).reason, 'concurrency-limit', 'the slot taken before is held');
  });

  it('without a limit no slot is taken and the record has no slots at all', () => {
    const clock = new ManualClock(T0);
    const policy = policyOf({ maxConcurrent: undefined });
    assert.equal(policy.maxConcurrent, 0);
    const record = fresh(clock);
    for (let i = 0; i < 5; i++) assert.equal(acquire(record, policy, T0).slot, null);
    assert.equal('slots' in record, false);
    reducer.record(record, policy, T0, outcomes(record.generation, { failures: 1 }));
    assert.equal('slots' in record, false);
    assert.equal(reducer.snapshot(record, policy, T0).activeSlots, 0);
  });

  it('a record with slots is valid; malformed slots are not', () => {
    const clock = new ManualClock(T0);
    const record = fresh(clock);
    acquire(record, policyOf(), T0);
    assert.equal(reducer.isValidRecord(record), true);
    assert.equal(reducer.isValidRecord({ ...record, slots: undefined }), true);
    assert.equal(reducer.isValidRecord({ ...record, slots: 'a=1' }), false);
    assert.equal(reducer.isValidRecord({ ...record, slots: [{ id: 'a', expiresAt: -1 }] }), false);
    assert.equal(reducer.isValidRecord({ ...record, slots: [{ id: 7, expiresAt: 1 }] }), false);
  });
});
