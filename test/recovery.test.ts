import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { BreakerFactory, MemoryStore, consecutiveFailures, isCircuitOpenError } from '../src/index.js';
import type { BreakerOptions } from '../src/index.js';
import { ManualClock } from '../src/testing/manual-clock.js';

const RAMP_MS = 10_000;
const ok = async (): Promise<string> => 'ok';
const fail = async (): Promise<never> => Promise.reject(new Error('down'));

/** Two factories (two processes) on one store, a breaker opened and closed again by a probe. */
async function closedAfterOutage(options: BreakerOptions = {}) {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock });
  const shared = {
    store,
    clock,
    trip: consecutiveFailures(1),
    openMs: 1_000,
    jitter: 0,
    recovery: { rampMs: RAMP_MS },
    ...options,
  };
  const a = new BreakerFactory(shared);
  const b = new BreakerFactory(shared);
  await b.breakerFor('dep').execute(ok); // b knows the breaker
  await a
    .breakerFor('dep')
    .execute(fail)
    .catch(() => undefined);
  clock.advance(1_000);
  await a.breakerFor('dep').execute(ok); // the probe: closed again
  assert.equal((await a.breakerFor('dep').state()).state, 'closed');
  return { clock, a, b };
}

/** The share of `n` calls admitted now, with the reasons and retry-afters of those rejected. */
async function admitted(factory: BreakerFactory, n: number) {
  let passed = 0;
  const retryAfters: number[] = [];
  for (let i = 0; i < n; i++) {
    try {
      await factory.breakerFor('dep').execute(ok);
      passed += 1;
    } catch (error) {
      assert.ok(isCircuitOpenError(error) && error.reason === 'recovering', String(error));
      retryAfters.push(error.retryAfterMs);
    }
  }
  return { share: passed / n, retryAfters };
}

describe('recovery ramp', () => {
  it('admits a share of calls that grows over rampMs after the close, the same in every process', async () => {
    const { clock, a, b } = await closedAfterOutage();
    // At the close: nothing yet.
    const start = clock.now();
    const first = await admitted(a, 200);
    assert.ok(first.share < 0.05, `share ${first.share} right after the close`);
    // The share admitted is √(elapsed / rampMs).
    for (const [elapsed, expected] of [
      [2_500, 0.5],
      [5_000, Math.SQRT1_2],
      [7_500, Math.sqrt(0.75)],
    ] as const) {
      clock.set(start + elapsed);
      for (const factory of [a, b]) {
        const { share, retryAfters } = await admitted(factory, 2_000);
        assert.ok(Math.abs(share - expected) < 0.05, `${elapsed} ms: share ${share}, expected ${expected}`);
        const left = RAMP_MS - elapsed;
        assert.ok(
          retryAfters.every((ms) => ms >= 1 && ms <= left),
          'retry within what is left of the ramp',
        );
        // Drawn as √u of what is left: later more likely, mean 2/3 of it.
        const mean = retryAfters.reduce((x, y) => x + y, 0) / retryAfters.length;
        assert.ok(
          Math.abs(mean - (2 * left) / 3) < left * 0.1,
          `spread over the rest of the ramp: mean ${mean}`,
        );
      }
    }
    clock.set(start + RAMP_MS);
    assert.equal((await admitted(a, 500)).share, 1);
    assert.equal((await admitted(b, 500)).share, 1);
    await a.close();
    await b.close();
  });

  it('a failure during the ramp counts as usual and can re-open the breaker', async () => {
    const { clock, a, b } = await closedAfterOutage();
    clock.advance(RAMP_MS / 2);
    let tripped = false;
    for (let i = 0; i < 100 && !tripped; i++) {
      try {
        await a.breakerFor('dep').execute(fail);
      } catch (error) {
        if (isCircuitOpenError(error) && error.reason === 'open') tripped = true;
      }
    }
    assert.ok(tripped, 'a failure admitted by the ramp opened it again');
    await a.close();
    await b.close();
  });

  it('calls rejected while open are told to come back spread over the ramp after the open period', async () => {
    const clock = new ManualClock();
    const factory = new BreakerFactory({
      store: new MemoryStore({ clock }),
      clock,
      trip: consecutiveFailures(1),
      openMs: 4_000,
      jitter: 0,
      recovery: { rampMs: RAMP_MS },
    });
    await factory
      .breakerFor('dep')
      .execute(fail)
      .catch(() => undefined);
    const retryAfters: number[] = [];
    for (let i = 0; i < 1_000; i++) {
      await factory
        .breakerFor('dep')
        .execute(ok)
        .catch((error: unknown) => {
          assert.ok(isCircuitOpenError(error) && error.reason === 'open');
          retryAfters.push(error.retryAfterMs);
        });
    }
    assert.equal(retryAfters.length, 1_000);
    assert.ok(retryAfters.every((ms) => ms >= 4_000 && ms < 4_000 + RAMP_MS));
    // √u of the ramp: three in four in its second half, where the ramp admits more.
    const late = retryAfters.filter((ms) => ms >= 4_000 + RAMP_MS / 2).length;
    assert.ok(late > 690 && late < 810, `${late} of 1,000 come back in the second half of the ramp`);
    await factory.close();
  });

  it('no ramp without the option: everything is admitted at the close', async () => {
    const { a, b } = await closedAfterOutage({ recovery: false });
    assert.equal((await admitted(a, 200)).share, 1);
    await a.close();
    await b.close();
  });

  it('recovery is validated: an unknown key, a negative ramp, the wrong type', () => {
    for (const recovery of [{ ramp: 5 }, { rampMs: -1 }, 'soon', {}]) {
      assert.throws(
        () => new BreakerFactory({ recovery: recovery as never }),
        (error: Error & { code?: string }) =>
          error.code === 'INVALID_OPTION' && /recovery/.test(error.message),
        JSON.stringify(recovery),
      );
    }
  });
});
