import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CircuitBreaker, MemoryStore, consecutiveFailures } from '../../src/index.js';
import type { OutcomeBatch } from '../../src/index.js';
import { resolveOptions } from '../../src/options.js';
import { ManualClock } from '../../src/testing/manual-clock.js';

// MemoryStore forgets breakers nobody used for longer than their retention (window + longest
// open period + probe lease), so a process that has seen 100,000 tenants does not keep them all.

const policy = resolveOptions({
  openMs: 1_000,
  backoff: { multiplier: 2, maxOpenMs: 8_000 },
  jitter: 0.5,
}).policy;
// windowMs 60 s + 8 s * 1.5 + probe lease 30 s
const retention = 60_000 + 12_000 + 30_000;

function batch(generation: number, failures: number): OutcomeBatch {
  return {
    generation,
    successes: failures === 0 ? 1 : 0,
    failures,
    trailingFailures: failures,
    slow: 0,
    ignored: 0,
    probes: [],
    random: 0,
  };
}

describe('MemoryStore retention', () => {
  it('drops breakers idle for two retention periods and keeps the ones in use', () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    for (let i = 0; i < 1_000; i++) store.record(`tenant-${i}`, policy, batch(1, 0));
    assert.equal(store.size, 1_000);
    for (let round = 0; round < 3; round++) {
      clock.advance(retention);
      store.record('busy', policy, batch(1, 0));
    }
    assert.equal(store.size, 1);
    assert.deepEqual(store.list('').keys, ['busy']);
    assert.equal(store.inspect('tenant-1', policy), null);
  });

  it('never drops a breaker sooner than its retention after its last use, whatever the phase', () => {
    // Others keep writing every second, so the store ages on its own cadence; the quiet breaker
    // is written at a different phase of it each time, and looked at once, just before its
    // retention is over (looking at it would keep it).
    for (let phase = 0; phase < retention; phase += retention / 8) {
      const clock = new ManualClock();
      const store = new MemoryStore({ clock });
      const tick = (ms: number): void => {
        for (let t = 0; t < ms; t += 1_000) {
          clock.advance(1_000);
          store.record('other', policy, batch(1, 0));
        }
      };
      tick(2 * retention + phase);
      store.record('quiet', policy, batch(1, 0));
      tick(retention - 1_000);
      assert.notEqual(store.inspect('quiet', policy), null, `phase ${phase}`);
    }
  });

  it('keeps an open breaker until its open period is over, however long a jitter function made it', () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const strict = resolveOptions({
      trip: { kind: 'consecutive-failures', threshold: 1 },
      openMs: 1_000,
    }).policy;
    const { generation } = store.acquire('down', strict);
    const opened = store.record('down', strict, { ...batch(generation, 1), jitterMs: 10 * retention });
    assert.equal(opened.snapshot.state, 'open');
    for (let i = 0; i < 18; i++) {
      clock.advance(retention / 2);
      store.record('other', strict, batch(1, 0));
    }
    assert.equal(store.inspect('down', strict)?.state, 'open');
  });

  it('keeps a breaker that only its in-process path touches, and counts on the stored record', async () => {
    // The breaker's closed path holds its record between calls (RecordSlot); a rotation of the
    // store's map must make it look the record up again, or the record would age out under it.
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const breaker = new CircuitBreaker('busy', { store, clock, trip: consecutiveFailures(3) });
    const strict = resolveOptions({ trip: consecutiveFailures(3) }).policy;
    for (let i = 0; i < 8; i++) {
      assert.equal(await breaker.execute(() => Promise.resolve(i)), i);
      clock.advance(3_600_000); // longer than any retention: every write rotates
      store.record('other', policy, batch(1, 0));
    }
    // Not looked at in between: reading a record keeps it too.
    for (let i = 0; i < 3; i++)
      await assert.rejects(breaker.execute(() => Promise.reject(new Error('down'))));
    assert.equal(store.inspect('busy', strict)?.state, 'open');
  });

  it('ages on the plain successes of the in-process path alone: a quiet breaker is forgotten', async () => {
    // A plain success of the closed path ages the map only when a rotation is due (the period
    // covers its retention already): with nothing else written, rotations must still happen.
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    store.record('quiet', policy, batch(1, 0));
    const busy = new CircuitBreaker('busy', {
      store,
      clock,
      openMs: 1_000,
      backoff: { multiplier: 2, maxOpenMs: 8_000 },
      jitter: 0.5,
    });
    for (let i = 0; i < 8; i++) {
      assert.equal(await busy.execute(() => Promise.resolve(i)), i);
      clock.advance(retention / 2);
    }
    assert.equal(store.inspect('quiet', policy), null);
    assert.deepEqual(store.list('').keys, ['busy']);
  });

  it('a longer retention first seen on the in-process path still lengthens the period', async () => {
    // Two breakers of one name with different policies share the record: the second one's plain
    // successes go through the closed path, and its retention (an hour's open period) must count.
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const short = new CircuitBreaker('shared', { store, clock });
    const long = new CircuitBreaker('shared', { store, clock, openMs: 3_600_000 });
    const defaults = resolveOptions({}).policy;
    await short.execute(() => Promise.resolve(1));
    await short.execute(() => Promise.resolve(2));
    await long.execute(() => Promise.resolve(3));
    store.record('quiet', defaults, batch(1, 0));
    // 20 minutes of the short breaker's successes: more than two default retentions (~6 minutes).
    for (let i = 0; i < 20; i++) {
      clock.advance(60_000);
      await short.execute(() => Promise.resolve(i));
    }
    assert.notEqual(store.inspect('quiet', defaults), null, 'kept for the hour the period now covers');
  });

  it('touching a breaker, even by reading it, keeps it', () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    store.record('read-only', policy, batch(1, 0));
    for (let i = 0; i < 6; i++) {
      clock.advance(retention / 2);
      store.record('other', policy, batch(1, 0));
      assert.notEqual(store.acquire('read-only', policy), null);
    }
    assert.equal(store.inspect('read-only', policy)?.counts.successes, 0, 'its window has passed');
    assert.equal(store.size, 2);
  });

  it('never forgets a breaker with an operator override, and forgets it again once cleared', () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    for (const override of ['forced-open', 'forced-closed', 'metrics-only'] as const) {
      store.force(override, policy, override);
    }
    for (let i = 0; i < 10; i++) {
      clock.advance(retention);
      store.record('other', policy, batch(1, 0));
    }
    assert.equal(store.inspect('forced-open', policy)?.circuitState, 'forced-open');
    assert.equal(store.inspect('forced-closed', policy)?.circuitState, 'forced-closed');
    assert.equal(store.inspect('metrics-only', policy)?.override, 'metrics-only');
    assert.equal(store.size, 4);
    assert.deepEqual(store.list('').keys, ['forced-closed', 'forced-open', 'metrics-only', 'other']);

    store.force('forced-open', policy, null);
    for (let i = 0; i < 3; i++) {
      clock.advance(retention);
      store.record('other', policy, batch(1, 0));
    }
    assert.equal(store.inspect('forced-open', policy), null, 'an ordinary idle breaker again');
    assert.equal(store.size, 3);
  });
});
