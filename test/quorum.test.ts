import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  BreakerFactory,
  CircuitBreaker,
  InvalidOptionError,
  MemoryStore,
  consecutiveFailures,
  failureRate,
  failuresInWindow,
  isCircuitOpenError,
} from '../src/index.js';
import type { BreakerOptions, Store } from '../src/index.js';
import { resolveOptions } from '../src/options.js';
import * as reducer from '../src/core/reducer.js';
import { ManualClock } from '../src/testing/manual-clock.js';
import { requiredReporters } from '../src/quorum.js';

// Issue 25: one sick process must not open a shared breaker for everyone. A shared open needs
// failures from a quorum of reporters (factories); below it, the sick process opens on its own.

const fail = (): Promise<never> => Promise.reject(new Error('down'));
const ok = (): Promise<string> => Promise.resolve('ok');

/** Two or more "processes": factories with their own reporter ids on one store. */
function fleet(n: number, options: BreakerOptions = {}) {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock });
  const events: string[] = [];
  const factories = Array.from(
    { length: n },
    (_, i) =>
      new BreakerFactory({
        clock,
        store,
        trip: consecutiveFailures(3),
        openMs: 1_000,
        jitter: 0,
        quorum: { minReporters: 2, minFraction: 1 },
        onStateChange: (name, _context, from, to, info) =>
          events.push(`${i}: ${name} ${from} -> ${to}${info.local ? ' (local)' : ''}`),
        ...options,
      }),
  );
  return { clock, store, factories, events };
}

/** `store`, with heartbeats answered only when `answer()` is called (a slow store). */
function heldHeartbeats(store: MemoryStore) {
  const pending: (() => void)[] = [];
  const held = new Proxy(store, {
    get(target, property) {
      if (property === 'heartbeat') {
        return (reporter: string, ttlMs: number) =>
          new Promise<number>((resolve) => pending.push(() => resolve(target.heartbeat(reporter, ttlMs))));
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return {
    store: held as Store,
    async answer(): Promise<void> {
      for (const resolve of pending.splice(0)) resolve();
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ran';
  } catch (error) {
    return isCircuitOpenError(error) ? error.reason : 'failed';
  }
}

describe('quorum', () => {
  it('needs max(1, min(minReporters, ceil(minFraction x active))) reporters', () => {
    const rule = { minReporters: 3, minFraction: 0.5 };
    assert.equal(requiredReporters(rule, 1), 1);
    assert.equal(requiredReporters(rule, 2), 1);
    assert.equal(requiredReporters(rule, 3), 2);
    assert.equal(requiredReporters(rule, 10), 3);
    assert.equal(requiredReporters({ minReporters: 2, minFraction: 0 }, 10), 1);
  });

  it('the reducer opens only when the batch quorum of reporters failed in the window', () => {
    const policy = resolveOptions({ trip: consecutiveFailures(2), openMs: 1_000 }).policy;
    const record = reducer.emptyRecord(100);
    const batch = (reporter: string, quorum: number) => ({
      generation: 100,
      successes: 0,
      failures: 1,
      trailingFailures: 1,
      slow: 0,
      ignored: 0,
      probes: [],
      random: 0,
      reporter,
      quorum,
    });
    reducer.record(record, policy, 1_000, batch('a', 2));
    let result = reducer.record(record, policy, 1_001, batch('a', 2));
    assert.equal(result.snapshot.state, 'closed');
    assert.equal(result.belowQuorum, true, 'tripped, but one reporter');
    result = reducer.record(record, policy, 1_002, batch('b', 2));
    assert.equal(result.snapshot.state, 'open', 'two reporters');
    assert.equal(result.belowQuorum, undefined);
    // A reporter whose failures left the window no longer counts.
    const other = reducer.emptyRecord(100);
    reducer.record(other, policy, 1_000, batch('a', 2));
    result = reducer.record(other, policy, 1_000 + policy.windowMs + policy.bucketMs, batch('b', 2));
    assert.equal(result.belowQuorum, true);
    assert.equal(reducer.isValidRecord(other), true);
  });

  it("one sick process opens on its own ('local-open'); the others keep calling", async () => {
    const { factories, events, clock } = fleet(2);
    const [sick, well] = factories.map((f) => f.breakerFor('api'));
    // Both are active reporters: each has written once.
    assert.equal(await well!.execute(ok), 'ok');
    assert.equal(await reasonOf(sick!.execute(fail)), 'failed');
    clock.advance(1);
    for (let i = 0; i < 2; i++) assert.equal(await reasonOf(sick!.execute(fail)), 'failed');
    assert.equal(await reasonOf(sick!.execute(ok)), 'local-open');
    assert.equal(await well!.execute(ok), 'ok', 'the other process keeps calling');
    assert.equal((await well!.state()).state, 'closed');
    assert.deepEqual(events, ['0: api closed -> open (local)']);
    // After its own open period it calls again, and opens again on failures (backoff).
    clock.advance(1_000);
    assert.equal(await sick!.execute(ok), 'ok');
    assert.ok(events.includes('0: api open -> closed (local)'), events.join('; '));
  });

  it('all processes failing open the shared breaker after as many failures as without a quorum', async () => {
    for (const quorum of [{ minReporters: 2, minFraction: 1 }, false] as const) {
      const { factories } = fleet(2, { quorum });
      const [a, b] = factories.map((f) => f.breakerFor('api'));
      await a!.execute(ok);
      await b!.execute(ok);
      assert.equal(await reasonOf(a!.execute(fail)), 'failed');
      assert.equal(await reasonOf(b!.execute(fail)), 'failed');
      assert.equal(await reasonOf(a!.execute(fail)), 'failed');
      assert.equal(await reasonOf(b!.execute(ok)), 'open', `quorum ${JSON.stringify(quorum)}`);
      assert.equal(await reasonOf(a!.execute(ok)), 'open');
    }
  });

  it("under a failure rate, another process's success that completes minimumCalls does not open it", async () => {
    const trip = failureRate(0.5, { minimumCalls: 4, windowMs: 10_000 });
    const { factories, events } = fleet(2, { trip });
    const [sick, well] = factories.map((f) => f.breakerFor('api'));
    assert.equal(await well!.execute(ok), 'ok');
    for (let i = 0; i < 2; i++) assert.equal(await reasonOf(sick!.execute(fail)), 'failed');
    // 2 failures in 4 calls, all from one reporter: this success trips the policy, below the quorum.
    assert.equal(await well!.execute(ok), 'ok');
    assert.equal(await well!.execute(ok), 'ok', 'the success that completed minimumCalls opened nothing');
    assert.equal((await well!.state()).state, 'closed');
    assert.deepEqual(events, [], 'and opened nobody on their own');
    // 3 failures in 6 calls: the sick process's own failure trips it, below the quorum.
    assert.equal(await reasonOf(sick!.execute(fail)), 'failed');
    assert.equal(await reasonOf(sick!.execute(ok)), 'local-open');
    assert.equal(await well!.execute(ok), 'ok');
    assert.deepEqual(events, ['0: api closed -> open (local)']);
  });

  it('a lone process needs only itself', async () => {
    const { factories } = fleet(1);
    const breaker = factories[0]!.breakerFor('api');
    for (let i = 0; i < 3; i++) await reasonOf(breaker.execute(fail));
    assert.equal(await reasonOf(breaker.execute(ok)), 'open');
  });

  it('a count taken before the others started does not let one process open the fleet', async () => {
    // A fleet that starts together: the sick process's heartbeat was answered when only it and
    // one other had written (2 active: one reporter would do), and the answer to the heartbeat
    // its failures send is slow. Until that answer, the failures ask for `minReporters`.
    const clock = new ManualClock();
    const held = heldHeartbeats(new MemoryStore({ clock }));
    const quorum = { minReporters: 2, minFraction: 0.5 };
    const { factories, events } = fleet(4, { clock, store: held.store, quorum });
    const [first, sick, ...others] = factories.map((f) => f.breakerFor('api'));
    for (const breaker of [first!, sick!]) {
      await breaker.execute(ok);
      await held.answer();
    }
    for (const breaker of others) {
      await breaker.execute(ok);
      await held.answer();
    }
    for (let i = 0; i < 3; i++) assert.equal(await reasonOf(sick!.execute(fail)), 'failed');
    assert.equal(await reasonOf(sick!.execute(ok)), 'local-open');
    assert.equal((await first!.state()).state, 'closed', 'the shared breaker stays closed');
    assert.deepEqual(events, ['1: api closed -> open (local)']);
  });

  it('once a count asked since the failures began is answered, a lone process opens for all', async () => {
    const clock = new ManualClock();
    const held = heldHeartbeats(new MemoryStore({ clock }));
    const { factories } = fleet(1, {
      clock,
      store: held.store,
      quorum: { minReporters: 2, minFraction: 0.5 },
    });
    const breaker = factories[0]!.breakerFor('api');
    await breaker.execute(ok);
    await held.answer();
    assert.equal(await reasonOf(breaker.execute(fail)), 'failed');
    await held.answer();
    for (let i = 0; i < 2; i++) assert.equal(await reasonOf(breaker.execute(fail)), 'failed');
    assert.equal(await reasonOf(breaker.execute(ok)), 'open');
  });

  it('a store that lost its reporters (a restart) does not let one process open the fleet', async () => {
    // Redis restarted without persistence: the reporters are gone, and the sick process's next
    // heartbeat answers itself alone. The others beat again within a beat interval; until a
    // window has passed, the sick process still counts the four it saw.
    const clock = new ManualClock();
    const shared = new MemoryStore({ clock });
    let reporters = shared;
    const restarted = new Proxy(shared, {
      get(target, property) {
        if (property === 'heartbeat') return (id: string, ttlMs: number) => reporters.heartbeat(id, ttlMs);
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const quorum = { minReporters: 2, minFraction: 0.5 };
    const { factories, events } = fleet(4, { clock, store: restarted, quorum });
    const [sick, ...others] = factories.map((f) => f.breakerFor('api'));
    for (const breaker of [...others, sick!]) await breaker.execute(ok);
    reporters = new MemoryStore({ clock });
    for (let i = 0; i < 3; i++) assert.equal(await reasonOf(sick!.execute(fail)), 'failed');
    assert.equal(reporters.heartbeat('probe', 1), 2, 'the sick process beat again and was alone');
    assert.equal(await reasonOf(sick!.execute(ok)), 'local-open');
    assert.equal((await others[0]!.state()).state, 'closed', 'the shared breaker stays closed');
    assert.deepEqual(events, ['0: api closed -> open (local)']);
  });

  it('a fleet that shrank is believed a window later', async () => {
    const clock = new ManualClock();
    const shared = new MemoryStore({ clock });
    const windowMs = 300;
    const { factories, events } = fleet(4, {
      clock,
      store: shared,
      trip: failuresInWindow(3, windowMs),
      quorum: { minReporters: 2, minFraction: 0.5 },
    });
    const [last, ...gone] = factories.map((f) => f.breakerFor('api'));
    for (const breaker of [...gone, last!]) await breaker.execute(ok);
    // The three others stop; the store forgets them a window later (its time), and the last
    // process's heartbeats a window later (its own time) answer it alone.
    clock.advance(windowMs + 1);
    await new Promise((resolve) => setTimeout(resolve, windowMs + 50));
    for (let i = 0; i < 3; i++) assert.equal(await reasonOf(last!.execute(fail)), 'failed');
    assert.equal(await reasonOf(last!.execute(ok)), 'open', 'alone, it opens the breaker for all');
    assert.deepEqual(events, ['0: api closed -> open']);
  });

  it('refuses a store without heartbeat, and checks its options', () => {
    const store = new MemoryStore();
    const bare: Store = {
      acquire: (k, p) => store.acquire(k, p),
      record: (k, p, b) => store.record(k, p, b),
      inspect: (k, p) => store.inspect(k, p),
      force: (k, p, o) => store.force(k, p, o),
      list: (p) => store.list(p),
    };
    assert.throws(
      () => new CircuitBreaker('x', { store: bare, quorum: {} }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'quorum',
    );
    assert.throws(
      () => new CircuitBreaker('x', { quorum: { minReporters: 0 } }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'quorum.minReporters',
    );
    assert.throws(
      () => new CircuitBreaker('x', { quorum: { minFraction: 2 } }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'quorum.minFraction',
    );
  });
});
