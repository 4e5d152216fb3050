import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../../src/index.js';
import { IntermittentFailer, IntermittentFailure, ManualClock } from '../../src/testing/index.js';

const take = (failer: IntermittentFailer, n: number): string =>
  Array.from({ length: n }, () => (failer.next() ? 's' : 'f')).join('');

describe('IntermittentFailer', () => {
  it('alternates by default', () => {
    assert.equal(take(new IntermittentFailer(), 6), 'sfsfsf');
  });

  it('cycles successes then failures', () => {
    const failer = new IntermittentFailer({ successes: 3, failures: 2 });
    assert.equal(take(failer, 12), 'sssffsssffss');
    assert.equal(failer.calls, 12);
    assert.equal(failer.failures, 4);
    assert.equal(failer.successes, 8);
  });

  it('follows an explicit pattern, as a string or booleans, and then repeats, succeeds or fails', () => {
    assert.equal(take(new IntermittentFailer({ pattern: 'ss f-f_s' }), 10), 'ssffsssffs');
    assert.equal(take(new IntermittentFailer({ pattern: [false, true] }), 4), 'fsfs');
    assert.equal(take(new IntermittentFailer({ pattern: 'fff', then: 'succeed' }), 6), 'fffsss');
    assert.equal(take(new IntermittentFailer({ pattern: 'ss', then: 'fail' }), 5), 'ssfff');
    assert.equal(take(new IntermittentFailer({ pattern: '', then: 'fail' }), 2), 'ff');
  });

  it('can start out of phase, peek without deciding, and reset', () => {
    const failer = new IntermittentFailer({ successes: 2, failures: 1, offset: 2 });
    assert.equal(failer.peek(), false);
    assert.equal(failer.peek(), false);
    assert.equal(take(failer, 4), 'fssf');
    failer.reset();
    assert.equal(failer.calls, 0);
    assert.equal(take(failer, 3), 'fss');
  });

  it('throws from check(), rejects from run() without running the work, and wraps functions', async () => {
    const failer = new IntermittentFailer({ pattern: 'sf' });
    failer.check();
    assert.throws(
      () => failer.check(),
      (error: unknown) => error instanceof IntermittentFailure && error.call === 2,
    );
    let ran = 0;
    assert.equal(await failer.run(() => ++ran), 1);
    await assert.rejects(
      failer.run(() => ++ran),
      IntermittentFailure,
    );
    assert.equal(ran, 1);
    const double = failer.wrap(async (x: number) => Promise.resolve(x * 2));
    assert.equal(await double(21), 42);
    await assert.rejects(double(1), /intermittent failure \(call 6\)/);
  });

  it('throws the configured error', async () => {
    const failer = new IntermittentFailer({ pattern: 'f', error: (call) => new RangeError(`no ${call}`) });
    await assert.rejects(failer.run(), new RangeError('no 1'));
  });

  it('rejects malformed options with errors that name them', () => {
    assert.throws(
      () => new IntermittentFailer({ successes: -1 }),
      /Expected `successes` to be a non-negative integer, got `-1` \(number\)/,
    );
    assert.throws(() => new IntermittentFailer({ failures: 1.5 }), /`failures`/);
    assert.throws(
      () => new IntermittentFailer({ pattern: 'sxf' }),
      /Expected `pattern` to be a string of s and f, got `sxf` \(string\)/,
    );
    assert.throws(() => new IntermittentFailer({ pattern: '' }), /at least one step/);
    assert.throws(() => new IntermittentFailer({ successes: 0, failures: 0 }), /at least one step/);
    // @ts-expect-error: not a valid mode
    assert.throws(() => new IntermittentFailer({ then: 'stop' }), /`then`/);
    // @ts-expect-error: not a pattern
    assert.throws(() => new IntermittentFailer({ pattern: [1, 0] }), /`pattern`/);
  });

  it('drives a breaker the same way every run', async () => {
    const clock = new ManualClock();
    const factory = new BreakerFactory({ clock, trip: consecutiveFailures(3), openMs: 1_000 });
    const breaker = factory.breakerFor('flaky');
    const failer = new IntermittentFailer({ pattern: 'ss fff', then: 'succeed' });
    const seen: string[] = [];
    for (let i = 0; i < 7; i++) {
      try {
        await breaker.execute(() => failer.run());
        seen.push('ok');
      } catch (error) {
        seen.push(isCircuitOpenError(error) ? 'rejected' : 'failed');
      }
    }
    assert.deepEqual(seen, ['ok', 'ok', 'failed', 'failed', 'failed', 'rejected', 'rejected']);
    assert.equal(failer.calls, 5, 'a rejected call never reaches the dependency');
    await factory.close();
  });
});
