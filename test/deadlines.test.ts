import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { endDeadline, runningDeadlines, startDeadline } from '../src/deadlines.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('call deadlines (one timer per duration)', () => {
  it('expires the calls still running, each once and no sooner than its time, in the order they started', async () => {
    const expired: string[] = [];
    const at: Record<string, number> = {};
    const timed = (name: string, ms: number) => {
      const started = performance.now();
      return startDeadline(ms, () => {
        expired.push(name);
        at[name] = performance.now() - started;
      });
    };
    const a = timed('a', 30);
    await sleep(5);
    const b = timed('b', 30);
    const c = timed('c', 30);
    const d = timed('d', 60);
    endDeadline(b);
    await sleep(100);
    assert.deepEqual(expired, ['a', 'c', 'd']);
    // A timer may fire up to a millisecond early (the event loop's time is read when its turn begins).
    for (const [name, ms] of [
      ['a', 30],
      ['c', 30],
      ['d', 60],
    ] as const) {
      assert.ok(at[name]! >= ms - 1, `${name} expired after ${at[name]} ms, before its ${ms} ms`);
    }
    endDeadline(a); // after it expired: nothing
    endDeadline(c);
    endDeadline(d);
    assert.equal(expired.length, 3);
    assert.equal(runningDeadlines(), 0);
  });

  it('a call ended early never expires; one timer times them all, and holds the process only while one runs', async () => {
    const before = timers();
    let expired = 0;
    const held = startDeadline(25, () => (expired += 1));
    for (let i = 0; i < 1_000; i++) endDeadline(startDeadline(25, () => (expired += 100)));
    assert.equal(runningDeadlines(), 1);
    assert.equal(timers(), before + 1, 'one timer for a thousand and one calls');
    endDeadline(held);
    assert.equal(timers(), before, 'nothing running: the timer no longer holds the process');
    await sleep(60);
    assert.equal(expired, 0);
  });

  it('ended calls behind one that hangs do not pile up', async () => {
    let expired = 0;
    const hung = startDeadline(40, () => (expired += 1));
    for (let i = 0; i < 10_000; i++) endDeadline(startDeadline(40, () => (expired += 100)));
    assert.equal(runningDeadlines(), 1);
    assert.ok(hung.queue.queued <= 64, `${hung.queue.queued} entries held for 1 call running`);
    await sleep(80);
    assert.equal(expired, 1, 'only the hung call expired');
    endDeadline(hung);
    assert.equal(runningDeadlines(), 0);
  });

  it('an expiry may start and end calls (re-entrant), and they are timed too', async () => {
    const order: string[] = [];
    startDeadline(20, () => {
      order.push('first');
      const ended = startDeadline(20, () => order.push('ended'));
      endDeadline(ended);
      startDeadline(20, () => order.push('second'));
    });
    // Polled rather than one sleep: on a busy machine the first expiry may come late.
    for (let waited = 0; order.length < 2 && waited < 5_000; waited += 10) await sleep(10);
    await sleep(30);
    assert.deepEqual(order, ['first', 'second']);
    assert.equal(runningDeadlines(), 0);
  });

  it('keeps the process alive while a timed call runs, and not once none does', () => {
    // A call that never settles, with nothing else to wait for: its timeout still comes.
    const run = (code: string) =>
      spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 30_000,
      });
    const hanging = run(`
      import { CircuitBreaker, isCallTimeoutError } from './src/index.js';
      const b = new CircuitBreaker('dep', { timeoutMs: 50 });
      await b.execute(() => Promise.resolve(1)); // leaves the timer, no longer holding the process
      const error = await b.execute(() => new Promise(() => {})).catch((e) => e);
      console.log(isCallTimeoutError(error) ? 'timed out' : 'other: ' + error);
    `);
    assert.equal(hanging.stdout.trim(), 'timed out', hanging.stderr);
    assert.equal(hanging.status, 0);
    // A finished call's timer (60 s) must not hold the process past the 30 s limit.
    const finished = run(`
      import { CircuitBreaker } from './src/index.js';
      const b = new CircuitBreaker('dep', { timeoutMs: 60_000 });
      console.log(await b.execute(() => Promise.resolve('done')));
    `);
    assert.equal(finished.error, undefined, 'exited before the 30 s limit');
    assert.equal(finished.stdout.trim(), 'done', finished.stderr);
    assert.equal(finished.status, 0);
  });
});
