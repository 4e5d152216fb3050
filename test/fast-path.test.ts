import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import {
  BreakerFactory,
  MemoryStore,
  consecutiveFailures,
  failureRate,
  failuresInWindow,
} from '../src/index.js';
import type { BreakerRecord, Outcome, Store, TripPolicy } from '../src/index.js';
import * as reducer from '../src/core/reducer.js';
import { resolveOptions } from '../src/options.js';
import { ManualClock } from '../src/testing/manual-clock.js';
import { delegatingStore } from './helpers/delegating-store.js';

// The breaker runs closed-state calls on a MemoryStore through an allocation-free path
// (reducer.recordClosedOutcome). These tests hold it to the general path: same records, same
// transitions, same answers.

const trips: TripPolicy[] = [
  consecutiveFailures(3),
  failuresInWindow(4, 10_000),
  failureRate(0.5, { minimumCalls: 6, windowMs: 10_000 }),
];

const step = fc.record({
  outcome: fc.constantFrom<Outcome>('success', 'failure', 'ignored'),
  slow: fc.boolean(),
  advance: fc.nat({ max: 4_000 }),
  random: fc.double({ min: 0, max: 0.999, noNaN: true }),
});

function clone(record: BreakerRecord): BreakerRecord {
  return structuredClone(record);
}

describe('reducer.recordClosedOutcome', () => {
  it('changes a closed record exactly as record() does with a batch of one', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...trips),
        fc.array(step, { maxLength: 60, size: 'max' }),
        (trip, steps) => {
          const policy = resolveOptions({ trip, openMs: 5_000 }).policy;
          let now = 1_700_000_000_000;
          const fast = reducer.emptyRecord();
          const general = reducer.emptyRecord();
          for (const { outcome, slow, advance, random } of steps) {
            now += advance;
            const counted: Outcome = slow && outcome !== 'ignored' ? 'failure' : outcome;
            const isSlow = slow && outcome !== 'ignored';
            const before = clone(fast);
            const moved = reducer.recordClosedOutcome(
              fast,
              policy,
              now,
              fast.generation,
              counted,
              isSlow,
              random,
              0,
            );
            if (before.state !== 'closed') {
              assert.equal(moved, undefined);
              assert.deepEqual(fast, before, 'a record that is not closed is left alone');
              continue;
            }
            const failures = counted === 'failure' ? 1 : 0;
            const result = reducer.record(general, policy, now, {
              generation: general.generation,
              successes: counted === 'success' ? 1 : 0,
              failures,
              trailingFailures: failures,
              slow: isSlow ? 1 : 0,
              ignored: counted === 'ignored' ? 1 : 0,
              probes: [],
              random,
            });
            assert.deepEqual(moved, result.transition);
            assert.deepEqual(fast, general);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses a result from another generation and changes nothing', () => {
    const policy = resolveOptions({}).policy;
    const record = reducer.emptyRecord();
    const before = clone(record);
    assert.equal(
      reducer.recordClosedOutcome(record, policy, 1_000, record.generation + 1, 'failure', false, 0, 0),
      undefined,
    );
    assert.deepEqual(record, before);
  });
});

/** A store that is not a MemoryStore, so the breaker takes the general path through it. */
const generalPath = (store: MemoryStore): Store => delegatingStore(store);

describe('a breaker on a MemoryStore', () => {
  it('answers, counts and transitions as it does through the general path', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...trips),
        fc.array(fc.record({ outcome: fc.constantFrom('ok', 'fail', 'expected'), advance: fc.nat(3_000) }), {
          maxLength: 40,
          size: 'max',
        }),
        async (trip, steps) => {
          const clock = new ManualClock();
          const direct = new MemoryStore({ clock });
          const wrapped = new MemoryStore({ clock });
          const options = { trip, openMs: 5_000, jitter: 0, clock };
          const a = new BreakerFactory({ ...options, store: direct }).breakerFor('t');
          const b = new BreakerFactory({ ...options, store: generalPath(wrapped) }).breakerFor('t');
          const changes: string[][] = [[], []];
          a.onStateChange((e) => changes[0]!.push(`${e.from}>${e.to}@${e.generation}`));
          b.onStateChange((e) => changes[1]!.push(`${e.from}>${e.to}@${e.generation}`));
          for (const { outcome, advance } of steps) {
            clock.advance(advance);
            const run = (): Promise<string> =>
              outcome === 'ok'
                ? Promise.resolve('ok')
                : Promise.reject(outcome === 'fail' ? new Error('down') : new Error('expected'));
            const settle = (p: Promise<string>): Promise<string> =>
              p.then(
                (v) => v,
                (e: Error & { code?: string }) => e.code ?? e.message,
              );
            assert.equal(await settle(a.execute(run)), await settle(b.execute(run)));
          }
          assert.deepEqual(changes[0], changes[1]);
          const [sa, sb] = [await a.state(), await b.state()];
          if (trip.kind === 'failure-rate') {
            assert.deepEqual(sa, sb);
          } else {
            // Under a count policy a shared store is sent no success (or ignored call) that has
            // nothing to reset: its failures and run agree, its successes are not all there.
            const failuresOnly = (s: typeof sa) => ({
              ...s,
              counts: { failures: s.counts.failures, consecutiveFailures: s.counts.consecutiveFailures },
            });
            assert.deepEqual(failuresOnly(sa), failuresOnly(sb));
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('the in-process path without options', () => {
  it('fences a call admitted before the breaker opened and closed again, while new calls run', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const b = new BreakerFactory({
      store,
      clock,
      trip: consecutiveFailures(2),
      openMs: 1_000,
      jitter: 0,
    }).breakerFor('t');
    assert.equal(await b.execute(() => Promise.resolve('first')), 'first'); // makes the record
    let failSlow: (error: Error) => void = () => undefined;
    const slow = b.execute(
      () =>
        new Promise<string>((_resolve, reject) => {
          failSlow = reject;
        }),
    );
    const boom = new Error('down');
    for (let i = 0; i < 2; i++) await assert.rejects(b.execute(() => Promise.reject(boom)));
    assert.equal((await b.state()).state, 'open');
    clock.advance(1_001);
    assert.equal(await b.execute(() => 'probe'), 'probe');
    const closed = await b.state();
    assert.equal(closed.state, 'closed');
    // A call admitted under the new generation while the old one is still in flight.
    assert.equal(await b.execute(() => Promise.resolve('new')), 'new');
    failSlow(boom);
    await assert.rejects(slow, (e) => e === boom);
    const after = await b.state();
    assert.equal(after.generation, closed.generation);
    assert.equal(after.counts.failures, 0, 'the old call counts in no later generation');
    assert.equal(after.counts.consecutiveFailures, 0);
    assert.equal(after.counts.successes, 1);
  });

  it('settles a function that throws synchronously or returns a plain value', async () => {
    const clock = new ManualClock();
    const b = new BreakerFactory({ store: new MemoryStore({ clock }), clock }).breakerFor('t');
    const boom = new Error('sync');
    await assert.rejects(
      b.execute(() => {
        throw boom;
      }),
      (e) => e === boom,
    );
    assert.equal(await b.execute(() => 42), 42);
    const { counts } = await b.state();
    assert.deepEqual([counts.failures, counts.successes], [1, 1]);
  });
});
