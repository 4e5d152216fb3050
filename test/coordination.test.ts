import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  BreakerFactory,
  MemoryStore,
  consecutiveFailures,
  failureRate,
  isCircuitOpenError,
} from '../src/index.js';
import type { BreakerOptions, Store } from '../src/index.js';
import { resolveOptions } from '../src/options.js';
import { FaultyStore } from '../src/testing/faulty-store.js';
import { ManualClock } from '../src/testing/manual-clock.js';

// How a breaker coordinates through cold starts, slow stores and blips (DESIGN.md "When the store
// fails", "Lifecycle"). In-process, with a MemoryStore behind a FaultyStore; the same cases
// against real servers and processes are in test/redis and test/dynamodb.

const ok = (): Promise<string> => Promise.resolve('value');
const boom = new Error('dependency down');
const fail = (): Promise<string> => Promise.reject(boom);
const outcome = (p: Promise<string>): Promise<string> =>
  p.then(
    (v) => v,
    (e: unknown) =>
      isCircuitOpenError(e) ? `rejected:${e.reason}` : e === boom ? 'boom' : `other:${String(e)}`,
  );
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done()` holds, polling; gives up (returning false) after `ms` of real time. */
async function eventually(done: () => boolean, ms = 2_000): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) return false;
    await sleep(2);
  }
  return true;
}

function setup(
  options: BreakerOptions = {},
  latencyMs: FaultyStore['mode'] extends never ? never : number = 0,
) {
  const clock = new ManualClock();
  const memory = new MemoryStore({ clock });
  const store = new FaultyStore(memory, { latencyMs });
  const factory = new BreakerFactory({
    store,
    clock,
    trip: consecutiveFailures(3),
    openMs: 10_000,
    jitter: 0,
    ...options,
  });
  return { clock, memory, store, factory };
}

/** Opens `name` in `memory` directly, then lets its open period pass: the next acquire is a probe. */
function halfOpenSoon(memory: MemoryStore, clock: ManualClock, name: string, halfOpenMaxCalls = 1) {
  const factory = new BreakerFactory({
    store: memory,
    clock,
    trip: consecutiveFailures(1),
    openMs: 1_000,
    jitter: 0,
    halfOpenMaxCalls,
  });
  return factory
    .breakerFor(name)
    .execute(fail)
    .catch(() => clock.advance(1_001));
}

describe('coordination with the store', () => {
  it('first contact is not an outage: a slow first answer is waited for, not replaced by the fallback', async () => {
    const clock = new ManualClock();
    const memory = new MemoryStore({ clock });
    let first = true;
    // The first call includes connecting: 400 ms, far past the adaptive per-call floor.
    const store = new FaultyStore(memory, { latencyMs: () => (first ? ((first = false), 400) : 0) });
    const factory = new BreakerFactory({ store, clock, trip: consecutiveFailures(1), openMs: 10_000 });
    await halfOpenSoon(memory, clock, 'dep');
    const breaker = factory.breakerFor('dep');
    const errors: string[] = [];
    breaker.onStoreError((e) => errors.push(e.operation));
    let calls = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        outcome(
          breaker.execute(() => {
            calls += 1;
            return fail();
          }),
        ),
      ),
    );
    assert.deepEqual(errors, []);
    assert.equal(calls, 1, 'one probe, as halfOpenMaxCalls says, not a local closed breaker');
    assert.equal(results.filter((r) => r === 'boom').length, 1);
  });

  it('a slow store is not a dead one: the timeout follows the observed latency', async () => {
    const { factory } = setup({}, 120);
    const breaker = factory.breakerFor('dep');
    const errors: string[] = [];
    breaker.onStoreError((e) => errors.push(e.operation));
    for (let i = 0; i < 8; i++) assert.equal(await breaker.execute(ok), 'value');
    assert.deepEqual(errors, [], 'a steady 120 ms is not a failure (the old fixed 100 ms timeout failed it)');
  });

  it('a late answer still teaches the breaker: a late open closes the door at once', async () => {
    let slowRecords = false;
    const clock = new ManualClock();
    const memory = new MemoryStore({ clock });
    const store = new FaultyStore(memory, { latencyMs: (m) => (m === 'record' && slowRecords ? 60 : 0) });
    const factory = new BreakerFactory({ store, clock, storeTimeoutMs: 20, trip: consecutiveFailures(3) });
    const breaker = factory.breakerFor('dep');
    const transitions: string[] = [];
    breaker.onStateChange((e) => transitions.push(`${e.from}>${e.to}`));
    await outcome(breaker.execute(fail));
    await outcome(breaker.execute(fail));
    slowRecords = true;
    await outcome(breaker.execute(fail)); // its write times out, then lands and opens the breaker
    await sleep(100);
    assert.equal(memory.inspect('dep', POLICY)?.state, 'open');
    assert.deepEqual(transitions, ['closed>open'], 'reported by the process whose write made it');
    const acquires = store.calls.acquire;
    assert.equal(await outcome(breaker.execute(ok)), 'rejected:open');
    assert.equal(store.calls.acquire, acquires, 'rejected locally, without asking the store');
  });

  it('a probe lease granted to an acquire that timed out is given back at once', async () => {
    const { clock, memory, store, factory } = setup({ storeTimeoutMs: 20, halfOpenMaxCalls: 1 });
    const breaker = factory.breakerFor('dep');
    const now = clock.now();
    await halfOpenSoon(memory, clock, 'dep');
    clock.set(now);
    assert.equal((await breaker.state()).state, 'open'); // this process has seen the breaker
    clock.advance(1_001);
    const transitions: string[] = [];
    breaker.onStateChange((e) => transitions.push(`${e.from}>${e.to}`));
    store.mode = 'hang';
    let calls = 0;
    assert.equal(
      await outcome(
        breaker.execute(() => {
          calls += 1;
          return ok();
        }),
      ),
      'rejected:open',
      'a probe claim that timed out never admits',
    );
    store.mode = 'up';
    store.release(); // the acquire lands: it took the only probe slot
    await sleep(10);
    const snapshot = memory.inspect('dep', POLICY);
    assert.equal(snapshot?.state, 'half-open');
    assert.equal(snapshot?.activeProbes, 0, 'the unused lease was released, not held for probeLeaseMs');
    assert.deepEqual(transitions, ['open>half-open'], 'the transition it made is reported');
    assert.equal(calls, 0);
  });

  it('outcomes kept during a blip are written when any breaker reaches the store, and trip as they should', async () => {
    const { clock, memory, store, factory } = setup({ storeTimeoutMs: 20 });
    const a = factory.breakerFor('tenant-a');
    const b = factory.breakerFor('tenant-b');
    await a.execute(ok);
    await b.execute(ok);
    store.mode = 'error';
    assert.equal(await outcome(a.execute(fail)), 'boom');
    assert.equal(await outcome(a.execute(fail)), 'boom');
    store.mode = 'up';
    clock.advance(1_000);
    await b.execute(ok); // tenant B's call finds the store back
    await eventually(() => memory.inspect('tenant-a', POLICY)?.counts.consecutiveFailures === 2);
    assert.equal(memory.inspect('tenant-a', POLICY)?.counts.consecutiveFailures, 2, 'A wrote what it kept');
    assert.equal(await outcome(a.execute(fail)), 'boom');
    assert.equal(memory.inspect('tenant-a', POLICY)?.state, 'open', 'and its third failure trips it');
  });

  it('a process that never saw a breaker admits only halfOpenMaxCalls trial calls while the store is down', async () => {
    const { store, factory } = setup({ storeTimeoutMs: 20, connectTimeoutMs: 20, halfOpenMaxCalls: 2 });
    store.mode = 'error';
    const breaker = factory.breakerFor('never-seen');
    let running = 0;
    let most = 0;
    const slow = async (): Promise<string> => {
      running += 1;
      most = Math.max(most, running);
      await sleep(20);
      running -= 1;
      return 'value';
    };
    const first = await Promise.all(Array.from({ length: 30 }, () => outcome(breaker.execute(slow))));
    assert.equal(most, 2);
    assert.equal(first.filter((r) => r === 'value').length, 2);
    assert.ok(
      first.every((r) => r === 'value' || r === 'rejected:half-open-full'),
      first.join(),
    );
    // The trial passed: the dependency is healthy, and everything is admitted again.
    const later = await Promise.all(Array.from({ length: 30 }, () => outcome(breaker.execute(ok))));
    assert.ok(later.every((r) => r === 'value'));
  });

  it('close() settles within its bound on a hung store and says what is in doubt', async () => {
    const logged: string[] = [];
    const { store, factory } = setup({
      storeTimeoutMs: 10_000,
      flushIntervalMs: 60_000,
      logger: { warn: (_f, m) => void logged.push(m ?? ''), error: () => undefined },
    });
    const breaker = factory.breakerFor('dep');
    await breaker.execute(ok);
    await breaker.execute(fail).catch(() => undefined);
    store.mode = 'hang';
    const started = performance.now();
    const report = await factory.close({ timeoutMs: 200 });
    const took = performance.now() - started;
    assert.ok(took < 2_000, `took ${took} ms`);
    assert.equal(report.complete, false);
    // Sent to a store that never answered: it may hold them (a replay could count them twice).
    assert.deepEqual(report.inDoubt, [{ name: 'dep', successes: 1, failures: 1, ignored: 0 }]);
    assert.deepEqual(report.unwritten, []);
    assert.ok(
      logged.some((m) => m.includes('in doubt')),
      'and the logger is told',
    );
    store.release();
  });

  it('close() tells outcomes that never reached the store apart from those in doubt', async () => {
    const clock = new ManualClock();
    const memory = new MemoryStore({ clock });
    // Writes hang (sent, never answered) until `refuse`, then are refused before leaving.
    let refuse = false;
    const store: Store = {
      acquire: async (key, policy) => memory.acquire(key, policy),
      record: (key, policy, batch) => {
        if (refuse) throw new Error('connection refused');
        void batch;
        return new Promise(() => undefined);
      },
      inspect: async (key, policy) => memory.inspect(key, policy),
      force: async (key, policy, override) => memory.force(key, policy, override),
      list: async (prefix, cursor) => memory.list(prefix, cursor),
    };
    const logged: string[] = [];
    const factory = new BreakerFactory({
      store,
      clock,
      storeTimeoutMs: 20,
      trip: consecutiveFailures(100),
      // The report is logged (not a process warning): both kinds, each in its own words.
      logger: { warn: (_fields, message) => void logged.push(message ?? ''), error: () => undefined },
    });
    const breaker = factory.breakerFor('dep');
    await breaker.execute(fail).catch(() => undefined); // sent; no answer: in doubt
    refuse = true;
    clock.advance(5_000); // past the time the store is left alone after the timeout
    await breaker.execute(fail).catch(() => undefined); // refused before it left: never written
    const report = await factory.close({ timeoutMs: 100 });
    assert.equal(report.complete, false);
    assert.deepEqual(report.inDoubt, [{ name: 'dep', successes: 0, failures: 1, ignored: 0 }]);
    assert.deepEqual(report.unwritten, [{ name: 'dep', successes: 0, failures: 1, ignored: 0 }]);
    assert.ok(logged.some((m) => m.includes('could not write')));
    assert.ok(logged.some((m) => m.includes('in doubt')));
  });

  it('close() writes what was kept during an outage, even while the store is being left alone', async () => {
    const { memory, store, factory } = setup({ storeTimeoutMs: 20, trip: consecutiveFailures(100) });
    const breaker = factory.breakerFor('dep');
    await breaker.execute(ok);
    store.mode = 'error';
    for (let i = 0; i < 4; i++) await breaker.execute(fail).catch(() => undefined);
    store.mode = 'up'; // back, but the breaker has not called since
    const report = await factory.close();
    assert.deepEqual(report, { complete: true, unwritten: [], inDoubt: [] });
    assert.equal(memory.inspect('dep', POLICY)?.counts.failures, 4);
  });

  it('a batch that may have landed stays in doubt when its re-send waits out an outage: counted once', async () => {
    const clock = new ManualClock();
    const memory = new MemoryStore({ clock });
    // A store that remembers batch ids (as RedisStore does), and can lose a reply after applying.
    const seen = new Set<string>();
    let loseReply = false;
    let down = false;
    const store: Store = {
      acquire: async (key, policy) => {
        if (down) throw new Error('down');
        return memory.acquire(key, policy);
      },
      record: async (key, policy, batch) => {
        if (down) throw new Error('down');
        const again = batch.id !== undefined && seen.has(batch.id);
        if (batch.id !== undefined) seen.add(batch.id);
        const result = again
          ? { snapshot: memory.inspect(key, policy)!, transition: null, stale: true }
          : memory.record(key, policy, batch);
        if (loseReply) throw new Error('connection reset');
        return result;
      },
      inspect: async (key, policy) => memory.inspect(key, policy),
      force: async (key, policy, override) => memory.force(key, policy, override),
      list: async (prefix, cursor) => memory.list(prefix, cursor),
    };
    const factory = new BreakerFactory({
      store,
      clock,
      storeTimeoutMs: 1_000,
      trip: failureRate(1, { minimumCalls: 1_000_000, windowMs: 60_000 }),
    });
    const breaker = factory.breakerFor('dep');
    await breaker.execute(ok);
    loseReply = true;
    await breaker.execute(ok); // counted by the store, but this process cannot know: in doubt
    loseReply = false;
    down = true;
    await breaker.execute(ok); // admitted locally: kept
    await breaker.flush(); // the store is being left alone: nothing is sent, nothing is merged
    down = false;
    clock.advance(5_000);
    assert.deepEqual(await factory.close(), { complete: true, unwritten: [], inDoubt: [] });
    const policy = resolveOptions({
      trip: failureRate(1, { minimumCalls: 1_000_000, windowMs: 60_000 }),
    }).policy;
    assert.equal(memory.inspect('dep', policy)?.counts.successes, 3, 'each call counted once');
  });

  it('a record lost under a running breaker is adopted, not ignored: generations never go back', async () => {
    const clock = new ManualClock();
    const memory = new MemoryStore({ clock });
    const store = new FaultyStore(memory);
    const factory = new BreakerFactory({ store, clock, maxStalenessMs: 1_000, trip: consecutiveFailures(3) });
    const breaker = factory.breakerFor('dep');
    for (let i = 0; i < 3; i++) await outcome(breaker.execute(fail));
    clock.advance(60_000);
    await breaker.execute(ok); // half-open, probe succeeds: generation has moved on a few times
    memory.clear(); // the record is lost (a restart without persistence, an eviction, a flush)
    clock.advance(2_000);
    const before = store.calls.acquire;
    for (let i = 0; i < 40; i++) {
      await breaker.execute(ok);
      clock.advance(10);
    }
    assert.ok(store.calls.acquire - before <= 2, `${store.calls.acquire - before} acquires for 40 calls`);
  });
});

const POLICY = resolveOptions({ trip: consecutiveFailures(3), openMs: 10_000, jitter: 0 }).policy;
