import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { CoordinationHost } from '../src/coordination.js';
import { LocalFallback } from '../src/fallback.js';
import { consecutiveFailures, failureRate } from '../src/index.js';
import type { OutcomeBatch, Store, UpdateResult } from '../src/index.js';
import { resolveOptions } from '../src/options.js';
import { OutcomeWriter } from '../src/outcome-writer.js';
import type { WriterOwner } from '../src/outcome-writer.js';
import { StoreHealth } from '../src/store-health.js';
import { MemoryStore } from '../src/stores/memory.js';
import { outcomes } from '../src/testing/conformance.js';
import { ManualClock } from '../src/testing/manual-clock.js';

/** A writer over `store`, with an owner that records what it was told. */
function writerOver(store: Store, trip = failureRate(0.99, { minimumCalls: 1_000_000, windowMs: 60_000 })) {
  const clock = new ManualClock();
  const options = resolveOptions({ store, clock, trip, storeTimeoutMs: 1_000 });
  const told: { answered: UpdateResult[]; failed: string[] } = { answered: [], failed: [] };
  const owner: WriterOwner = {
    generation: 0,
    known: true,
    counts: {
      successes: 0,
      failures: 0,
      slow: 0,
      ignored: 0,
      total: 0,
      failureRate: 0,
      consecutiveFailures: 0,
    },
    own: (call) => call(),
    storeFailed: (operation) => void told.failed.push(operation),
    storeTimeoutMs: () => 1_000,
    throttleRate: () => 0,
    writeAnswered: (result) => void told.answered.push(result),
    writeAnsweredLate: (result) => void told.answered.push(result),
    learnGeneration: async () => undefined,
  };
  const host = { name: 'dep', jitterMs: () => 0, customTrips: () => false } as unknown as CoordinationHost;
  const writer = new OutcomeWriter(owner, host, options, new StoreHealth(), new LocalFallback());
  return { writer, told, policy: options.policy };
}

const batch = (generation: number, counts: Parameters<typeof outcomes>[1], id: string): OutcomeBatch => ({
  ...outcomes(generation, counts),
  id,
});

describe('OutcomeWriter', () => {
  it('a write whose reply was lost is kept in doubt and re-sent whole, under its id', async () => {
    const memory = new MemoryStore();
    const seen = new Set<string>();
    let loseReply = true;
    const sent: string[] = [];
    const store: Store = {
      acquire: async (key, policy) => memory.acquire(key, policy),
      record: async (key, policy, b) => {
        sent.push(b.id ?? '');
        const again = b.id !== undefined && seen.has(b.id);
        if (b.id !== undefined) seen.add(b.id);
        const result = again
          ? { snapshot: memory.inspect(key, policy)!, transition: null, stale: true }
          : memory.record(key, policy, b);
        if (loseReply) throw new Error('connection reset');
        return result;
      },
      inspect: async (key, policy) => memory.inspect(key, policy),
      force: async (key, policy, override) => memory.force(key, policy, override),
      list: async (prefix, cursor) => memory.list(prefix, cursor),
    };
    const { writer, told, policy } = writerOver(store);
    await writer.write(batch(0, { failures: 2 }, 'a.1'));
    assert.deepEqual(told.failed, ['record']);
    assert.deepEqual(writer.unwritten()?.inDoubt, { name: 'dep', successes: 0, failures: 2, ignored: 0 });
    assert.equal(writer.unwritten()?.unwritten, null);
    loseReply = false;
    await writer.drain(performance.now() + 1_000);
    assert.deepEqual(sent, ['a.1', 'a.1'], 're-sent whole, under the same id');
    assert.equal(memory.inspect('dep', policy)?.counts.failures, 2, 'counted once');
    assert.equal(writer.unwritten(), null);
  });

  it('a write refused before it left is kept as never written, and merged with what follows', async () => {
    const memory = new MemoryStore();
    let refuse = true;
    const store: Store = {
      acquire: async (key, policy) => memory.acquire(key, policy),
      record: (key, policy, b) => {
        if (refuse) throw new Error('refused');
        return Promise.resolve(memory.record(key, policy, b));
      },
      inspect: async (key, policy) => memory.inspect(key, policy),
      force: async (key, policy, override) => memory.force(key, policy, override),
      list: async (prefix, cursor) => memory.list(prefix, cursor),
    };
    const { writer, policy } = writerOver(store, consecutiveFailures(100));
    await writer.write(batch(0, { failures: 1 }, 'b.1'));
    await writer.write(batch(0, { successes: 1, failures: 1, trailingFailures: 1 }, 'b.2'));
    assert.deepEqual(writer.unwritten(), {
      unwritten: { name: 'dep', successes: 1, failures: 2, ignored: 0 },
      inDoubt: null,
    });
    refuse = false;
    await writer.drain(performance.now() + 1_000);
    assert.equal(writer.unwritten(), null);
    assert.equal(memory.inspect('dep', policy)?.counts.failures, 2);
    assert.equal(memory.inspect('dep', policy)?.counts.consecutiveFailures, 1, 'the run carried in order');
  });

  it('drain writes what was kept while an earlier re-send was under way', async () => {
    const memory = new MemoryStore();
    let release = (): void => undefined;
    let hold = true;
    const store: Store = {
      acquire: async (key, policy) => memory.acquire(key, policy),
      record: async (key, policy, b) => {
        if (hold) {
          hold = false;
          await new Promise<void>((resolve) => {
            release = resolve;
          });
        }
        return memory.record(key, policy, b);
      },
      inspect: async (key, policy) => memory.inspect(key, policy),
      force: async (key, policy, override) => memory.force(key, policy, override),
      list: async (prefix, cursor) => memory.list(prefix, cursor),
    };
    const { writer, policy } = writerOver(store);
    writer.keep(batch(0, { successes: 2 }, 'd.1'), false);
    const resending = writer.resendKept(); // takes d.1; its write hangs
    await new Promise((resolve) => setImmediate(resolve));
    writer.keep(batch(0, { failures: 1 }, 'd.2'), false); // kept while that re-send is under way
    const draining = writer.drain(performance.now() + 2_000);
    await new Promise((resolve) => setImmediate(resolve));
    release();
    await Promise.all([resending, draining]);
    assert.equal(writer.unwritten(), null, 'nothing left behind');
    const counts = memory.inspect('dep', policy)?.counts;
    assert.deepEqual([counts?.successes, counts?.failures], [2, 1]);
  });

  it('writes in the background are waited for by flush, and hold the breaker meanwhile', async () => {
    const memory = new MemoryStore();
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const store: Store = {
      acquire: async (key, policy) => memory.acquire(key, policy),
      record: async (key, policy, b) => {
        await gate;
        return memory.record(key, policy, b);
      },
      inspect: async (key, policy) => memory.inspect(key, policy),
      force: async (key, policy, override) => memory.force(key, policy, override),
      list: async (prefix, cursor) => memory.list(prefix, cursor),
    };
    const { writer, told } = writerOver(store);
    writer.writeInBackground(batch(0, { successes: 1 }, 'c.1'));
    assert.equal(writer.holding, true);
    const flushed = writer.flush();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(told.answered.length, 0, 'flush waits for the write');
    release();
    await flushed;
    assert.equal(told.answered.length, 1);
    assert.equal(writer.holding, false);
  });

  it('a carried batch waits for the end of the turn, leaves by itself if no acquire takes it, and counts as unwritten until then', async () => {
    const memory = new MemoryStore();
    const sent: string[] = [];
    const store: Store = {
      acquire: async (key, policy) => memory.acquire(key, policy),
      record: async (key, policy, b) => {
        sent.push(b.id ?? '');
        return memory.record(key, policy, b);
      },
      inspect: async (key, policy) => memory.inspect(key, policy),
      force: async (key, policy, override) => memory.force(key, policy, override),
      list: async (prefix, cursor) => memory.list(prefix, cursor),
    };
    const { writer } = writerOver(store);
    writer.carry(batch(0, { successes: 1 }, 'c.1'));
    assert.deepEqual(sent, [], 'not sent in the turn it was carried in');
    assert.deepEqual(writer.unwritten()?.unwritten, { name: 'dep', successes: 1, failures: 0, ignored: 0 });
    assert.equal(writer.holding, true);
    // A second one sends the first at once (one waits at a time, and they stay in order).
    writer.carry(batch(0, { successes: 1 }, 'c.2'));
    assert.deepEqual(sent, ['c.1']);
    // Taken by an acquire: the writer no longer holds it.
    assert.equal(writer.takeCarried()?.id, 'c.2');
    assert.equal(writer.takeCarried(), null);
    writer.carry(batch(0, { successes: 1 }, 'c.3'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(sent, ['c.1', 'c.3'], 'left by itself at the end of the turn');
    writer.carry(batch(0, { successes: 1 }, 'c.4'));
    await writer.flush();
    assert.deepEqual(sent, ['c.1', 'c.3', 'c.4'], 'flush() sends it');
    assert.equal(writer.unwritten(), null);
  });

  it('numbers its batches, and each floor stays at or below every batch that may still be sent', async () => {
    const memory = new MemoryStore();
    const pending: Array<() => void> = [];
    let hold = true;
    let fail = false;
    const store: Store = {
      acquire: async (key, policy) => memory.acquire(key, policy),
      record: async (key, policy, b) => {
        if (fail) throw new Error('lost');
        if (hold) await new Promise<void>((resolve) => pending.push(resolve));
        return memory.record(key, policy, b);
      },
      inspect: async (key, policy) => memory.inspect(key, policy),
      force: async (key, policy, override) => memory.force(key, policy, override),
      list: async (prefix, cursor) => memory.list(prefix, cursor),
    };
    const { writer } = writerOver(store);
    const numbered = (): OutcomeBatch => ({
      ...outcomes(0, { failures: 1, trailingFailures: 1 }),
      id: writer.nextId(),
      idFloor: writer.idFloor(),
    });
    const first = numbered();
    assert.match(first.id!, /^[0-9a-z]+\.1$/);
    assert.equal(first.idFloor, 1);
    const writing = writer.write(first);
    // The first is in flight: the second's floor stays at it.
    const second = numbered();
    assert.equal(second.id, first.id!.replace(/1$/, '2'));
    assert.equal(second.idFloor, 1);
    // Carried (waiting for the turn's end): still below any floor given meanwhile.
    writer.carry(second);
    assert.equal(numbered().idFloor, 1);
    for (const resolve of pending.splice(0)) resolve();
    await writing;
    await writer.flush();
    for (const resolve of pending.splice(0)) resolve();
    await writer.flush();
    // Nothing in flight: a new batch is its own floor.
    assert.equal(numbered().idFloor, 4);
    // A write that failed is kept in doubt, and holds the floor until it is re-sent and answered.
    hold = false;
    fail = true;
    const lost = numbered();
    await writer.write(lost);
    assert.equal(numbered().idFloor, 5);
    fail = false;
    await writer.flush();
    assert.equal(numbered().idFloor, 7);
    // Another writer has a tag of its own.
    assert.notEqual(writerOver(store).writer.nextId().split('.')[0], first.id!.split('.')[0]);
  });
});
