import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

import { StoreHealth, isStoreTimeout } from '../src/store-health.js';

const run = promisify(execFile);
const cwd = new URL('..', import.meta.url).pathname;

/** A promise and the functions that settle it. */
function pending<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Runs `code` (an ES module with top-level await) in a fresh Node process, as the tests run src. */
async function inProcess(code: string): Promise<{ stdout: string; ms: number }> {
  const started = performance.now();
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd,
    timeout: 30_000,
  });
  return { stdout, ms: performance.now() - started };
}

describe('StoreHealth.call: a timeout per call in flight', () => {
  it('each call fails at its own deadline; one answered in time resolves', async () => {
    const health = new StoreHealth();
    const short = pending<string>();
    const long = pending<string>();
    const answered = pending<string>();
    const settled: string[] = [];
    const note = (name: string) => (value: unknown) => void settled.push(`${name}: ${String(value)}`);
    // The long one first: the short one's earlier deadline must not wait for it.
    const longCall = health.call(long.promise, 5_000, 'record');
    longCall.then(note('long'), note('long failed'));
    const shortCall = health.call(short.promise, 30, 'acquire');
    const answeredCall = health.call(answered.promise, 5_000, 'acquire');
    answered.resolve('ok');
    assert.equal(await answeredCall, 'ok');
    const error = await shortCall.then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(isStoreTimeout(error), 'the short call timed out');
    assert.match(String(error), /acquire did not answer within 30 ms/);
    assert.deepEqual(settled, [], 'the long call is still waiting for its own deadline');
    long.resolve('late enough');
    assert.equal(await longCall, 'late enough');
  });

  it('a reply after its timeout still reaches onLate', async () => {
    const health = new StoreHealth();
    const slow = pending<string>();
    const late: string[] = [];
    const call = health.call(slow.promise, 20, 'acquire', (value) => void late.push(value));
    await assert.rejects(call, (e: unknown) => isStoreTimeout(e));
    slow.resolve('after all');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(late, ['after all']);
  });

  it('keeps the process alive while a call is in flight, and not after it was answered', async () => {
    // In flight: the process stays until the timeout fails the call (an unref'd timer would let
    // it exit first, silently).
    const waiting = await inProcess(`
      import { StoreHealth } from './src/store-health.ts';
      new StoreHealth().call(new Promise(() => {}), 300, 'acquire').catch((e) => console.log('timed out:', e.message));
    `);
    assert.match(waiting.stdout, /timed out: Store acquire did not answer within 300 ms/);
    // Answered in time: nothing is left to wait for, though the timeout was a minute.
    const answered = await inProcess(`
      import { StoreHealth } from './src/store-health.ts';
      const health = new StoreHealth();
      for (let i = 0; i < 3; i++) console.log(await health.call(new Promise((r) => setTimeout(() => r(i), 10)), 60_000, 'acquire'));
    `);
    assert.equal(answered.stdout, '0\n1\n2\n');
    assert.ok(answered.ms < 20_000, `exited after ${Math.round(answered.ms)} ms, not after the minute`);
  });
});
