import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { BreakerFactory, InvalidOptionError, custom, failureRate, failuresInWindow } from '../src/index.js';
import { policyWindowMs } from '../src/core/policy.js';
import { describeValue, resolveOptions } from '../src/options.js';

// Option errors name the option, the expected form and what was given (STYLE.md habit 6).

/** The InvalidOptionError `fn` throws. */
function optionError(fn: () => unknown): InvalidOptionError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof InvalidOptionError, String(error));
    assert.equal(error.code, 'INVALID_OPTION');
    return error;
  }
  assert.fail('expected an InvalidOptionError');
}

describe('option errors say what was given', () => {
  it('NaN, Infinity and undefined are shown as themselves, not as JSON null', () => {
    assert.equal(
      optionError(() => resolveOptions({ openMs: Number.NaN })).message,
      'Expected `openMs` to be an integer from 1 to 2147483647, got `NaN` (number)',
    );
    assert.match(
      optionError(() => resolveOptions({ openMs: Infinity })).message,
      /got `Infinity` \(number\)$/,
    );
    assert.match(
      optionError(() => resolveOptions({ jitter: -Infinity })).message,
      /got `-Infinity` \(number\)$/,
    );
    const missing = optionError(() => resolveOptions({ trip: { kind: 'consecutive-failures' } as never }));
    assert.equal(missing.option, 'trip.threshold');
    assert.match(missing.message, /got `undefined` \(undefined\)$/);
    assert.match(
      optionError(() => resolveOptions({ trip: { kind: 'failure-rate', ratio: 0.5 } as never })).message,
      /^Expected `trip\.minimumCalls` to be an integer >= 1, got `undefined` \(undefined\)$/,
    );
  });

  it('describeValue shows every kind of value', () => {
    assert.equal(describeValue(Number.NaN), '`NaN` (number)');
    assert.equal(describeValue(undefined), '`undefined` (undefined)');
    assert.equal(describeValue(null), '`null` (null)');
    assert.equal(describeValue(-1), '`-1` (number)');
    assert.equal(describeValue('30s'), '`"30s"` (string)');
    assert.equal(describeValue(true), '`true` (boolean)');
    assert.equal(describeValue(10n), '`10` (bigint)');
    assert.equal(describeValue(Symbol('x')), '`Symbol(x)` (symbol)');
    assert.equal(describeValue([1, 2]), '`[1,2]` (array)');
    assert.equal(describeValue({ a: 1 }), '`{"a":1}` (object)');
    assert.equal(
      describeValue(() => 1),
      '[function] (function)',
    );
    const long = describeValue('x'.repeat(100));
    assert.equal(long, `\`"${'x'.repeat(56)}...\` (string)`);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    assert.equal(describeValue(circular), '`[object Object]` (object)');
  });

  it("failureRate's ratio is described as a number > 0 and <= 1, not from 5e-324", () => {
    for (const ratio of [0, -0.5, 1.5, Number.NaN]) {
      const error = optionError(() =>
        resolveOptions({ trip: failureRate(ratio, { minimumCalls: 1, windowMs: 1_000 }) }),
      );
      assert.equal(error.option, 'trip.ratio');
      assert.match(error.message, /^Expected `trip\.ratio` to be a number > 0 and <= 1, got /);
      assert.doesNotMatch(error.message, /e-324/);
    }
    assert.equal(
      resolveOptions({ trip: failureRate(Number.MIN_VALUE, { minimumCalls: 1, windowMs: 1_000 }) }).policy
        .trip.kind,
      'failure-rate',
    );
    assert.equal(
      resolveOptions({ trip: failureRate(1, { minimumCalls: 1, windowMs: 1_000 }) }).policy.trip.kind,
      'failure-rate',
    );
  });

  it('the other ranges are described as before', () => {
    assert.match(optionError(() => resolveOptions({ jitter: 2 })).message, /a finite number from 0 to 1,/);
    assert.match(optionError(() => resolveOptions({ maxStalenessMs: -1 })).message, /an integer from 0 to /);
    assert.match(
      optionError(() => resolveOptions({ trip: failuresInWindow(0, 1_000) })).message,
      /`trip\.threshold` to be an integer >= 1,/,
    );
    assert.match(
      optionError(() => resolveOptions({ backoff: { multiplier: 0.5 } })).message,
      /`backoff\.multiplier` to be a finite number from 1 to 1000,/,
    );
  });
});

describe('trip policy helpers check their arguments', () => {
  it('failureRate without its options object throws an InvalidOptionError, not a TypeError', () => {
    const error = optionError(() => (failureRate as (ratio: number) => unknown)(0.5));
    assert.equal(error.option, 'failureRate');
    assert.equal(
      error.message,
      'Expected `failureRate` options to be `{ minimumCalls, windowMs }` (numbers), got `undefined` (undefined)',
    );
    assert.match(
      optionError(() => failureRate(0.5, { windowMs: 1_000 } as never)).message,
      /got `\{"windowMs":1000\}` \(object\)$/,
    );
    assert.match(
      optionError(() => failureRate(0.5, { minimumCalls: '10', windowMs: 1_000 } as never)).message,
      /`failureRate` options/,
    );
    assert.match(
      optionError(() => failureRate('half' as never, { minimumCalls: 1, windowMs: 1_000 })).message,
      /^Expected `failureRate` ratio to be a number, got `"half"` \(string\)$/,
    );
  });

  it('failuresInWindow needs two numbers', () => {
    const error = optionError(() => (failuresInWindow as (threshold: number) => unknown)(3));
    assert.equal(error.option, 'failuresInWindow');
    assert.equal(
      error.message,
      'Expected `failuresInWindow` windowMs to be a number, got `undefined` (undefined)',
    );
    assert.match(
      optionError(() => failuresInWindow('3' as never, 1_000)).message,
      /^Expected `failuresInWindow` threshold to be a number, got `"3"` \(string\)$/,
    );
  });

  it('custom needs a predicate function and, if given, an options object with a numeric windowMs', () => {
    assert.match(
      optionError(() => custom(5 as never)).message,
      /^Expected `custom` predicate to be a function, got `5` \(number\)$/,
    );
    assert.match(
      optionError(() => custom(() => true, null as never)).message,
      /^Expected `custom` options to be `\{ windowMs\? \}`, got `null` \(null\)$/,
    );
    assert.match(
      optionError(() => custom(() => true, { windowMs: '1m' } as never)).message,
      /^Expected `custom` options to be `\{ windowMs\? \}`, got `\{"windowMs":"1m"\}` \(object\)$/,
    );
    assert.equal(policyWindowMs(custom(() => true)), 60_000);
    assert.equal(policyWindowMs(custom(() => true, {})), 60_000);
    assert.equal(policyWindowMs(custom(() => true, { windowMs: 5_000 })), 5_000);
  });

  it('well-formed calls build the data the stores evaluate', () => {
    assert.deepEqual(failureRate(0.5, { minimumCalls: 10, windowMs: 1_000 }), {
      kind: 'failure-rate',
      ratio: 0.5,
      minimumCalls: 10,
      windowMs: 1_000,
    });
    assert.deepEqual(failuresInWindow(3, 1_000), {
      kind: 'failures-in-window',
      threshold: 3,
      windowMs: 1_000,
    });
  });
});

describe('a bad option under byBaseName names where it is', () => {
  it('the option path starts with byBaseName["a"]', () => {
    const error = optionError(() => new BreakerFactory({ byBaseName: { a: { openMs: -1 } } }));
    assert.equal(error.option, 'byBaseName["a"].openMs');
    assert.equal(
      error.message,
      'Expected `byBaseName["a"].openMs` to be an integer from 1 to 2147483647, got `-1` (number)',
    );
    const trip = optionError(
      () => new BreakerFactory({ byBaseName: { b: { trip: failuresInWindow(0, 1_000) } } }),
    );
    assert.equal(trip.option, 'byBaseName["b"].trip.threshold');
    const backoff = optionError(() => resolveOptions({ backoff: { multiplier: 0 } }, 'byBaseName["c"]'));
    assert.equal(backoff.option, 'byBaseName["c"].backoff.multiplier');
    const logger = optionError(() => resolveOptions({ logger: {} as never }, 'byBaseName["d"]'));
    assert.equal(logger.option, 'byBaseName["d"].logger');
  });

  it('top-level options keep their plain names', () => {
    assert.equal(optionError(() => new BreakerFactory({ openMs: -1 })).option, 'openMs');
    assert.equal(optionError(() => resolveOptions({ openMs: -1 }, 'breaker options')).option, 'openMs');
  });
});

describe('probeLeaseMs must outlive a call of timeoutMs', () => {
  it('rejects a probeLeaseMs shorter than timeoutMs + 1000 when both are given, naming both', () => {
    for (const probeLeaseMs of [3_000, 5_000, 5_999]) {
      const error = optionError(() => resolveOptions({ timeoutMs: 5_000, probeLeaseMs }));
      assert.equal(error.option, 'probeLeaseMs');
      assert.equal(
        error.message,
        `Expected \`probeLeaseMs\` to be at least \`timeoutMs\` + 1000 (6000), so a probe's lease outlives its call, got \`${probeLeaseMs}\` (number)`,
      );
    }
    assert.equal(
      optionError(() => new BreakerFactory({ byBaseName: { a: { timeoutMs: 5_000, probeLeaseMs: 100 } } }))
        .option,
      'byBaseName["a"].probeLeaseMs',
    );
  });

  it('accepts one that does, and either option alone', () => {
    assert.equal(resolveOptions({ timeoutMs: 5_000, probeLeaseMs: 6_000 }).policy.probeLeaseMs, 6_000);
    // A probe's lease ends a second after its call must have: a crashed prober holds it no longer.
    assert.equal(resolveOptions({ timeoutMs: 5_000 }).policy.probeLeaseMs, 6_000);
    assert.equal(resolveOptions({}).policy.probeLeaseMs, 30_000);
    assert.equal(resolveOptions({ timeoutMs: 60_000 }).policy.probeLeaseMs, 61_000);
    assert.equal(resolveOptions({ probeLeaseMs: 100 }).policy.probeLeaseMs, 100);
  });
});

describe('maxConcurrent, concurrencyLeaseMs, queueMs', () => {
  it('are off by default, and in the policy when set', () => {
    const off = resolveOptions({});
    assert.equal(off.policy.maxConcurrent, 0);
    assert.equal(off.policy.concurrencyLeaseMs, 30_000);
    assert.equal(off.queueMs, 0);
    const on = resolveOptions({ maxConcurrent: 8, concurrencyLeaseMs: 5_000, queueMs: 250 });
    assert.deepEqual([on.policy.maxConcurrent, on.policy.concurrencyLeaseMs, on.queueMs], [8, 5_000, 250]);
    // The slot lease follows the call timeout, as a probe's lease does.
    assert.equal(resolveOptions({ maxConcurrent: 1, timeoutMs: 60_000 }).policy.concurrencyLeaseMs, 61_000);
  });

  it('say what was wrong with them', () => {
    for (const bad of [0, -1, 1.5, 1_001, '4', Number.NaN, null]) {
      const error = optionError(() => resolveOptions({ maxConcurrent: bad as number }));
      assert.equal(error.option, 'maxConcurrent');
      assert.match(error.message, /^Expected `maxConcurrent` to be an integer from 1 to 1000, got /);
    }
    assert.equal(
      optionError(() => resolveOptions({ concurrencyLeaseMs: 0 })).message,
      'Expected `concurrencyLeaseMs` to be an integer from 1 to 2147483647, got `0` (number)',
    );
    assert.equal(
      optionError(() => resolveOptions({ queueMs: -5 })).message,
      'Expected `queueMs` to be an integer from 0 to 2147483647, got `-5` (number)',
    );
    assert.equal(
      optionError(() => resolveOptions({ maxConcurrent: 2, timeoutMs: 5_000, concurrencyLeaseMs: 5_500 }))
        .message,
      "Expected `concurrencyLeaseMs` to be at least `timeoutMs` + 1000 (6000), so a call's slot outlives the call, got `5500` (number)",
    );
    assert.equal(
      optionError(() => new BreakerFactory({ byBaseName: { a: { maxConcurrent: 0 } } })).option,
      'byBaseName["a"].maxConcurrent',
    );
  });

  it('maxConcurrent needs a store that limits concurrency', () => {
    const store = {
      acquire: () => assert.fail(),
      record: () => assert.fail(),
      inspect: () => null,
      force: () => assert.fail(),
      list: () => ({ keys: [], cursor: null }),
    };
    const error = optionError(() => resolveOptions({ store, maxConcurrent: 2 }));
    assert.equal(error.option, 'maxConcurrent');
    assert.equal(
      error.message,
      '`maxConcurrent` needs a store that limits concurrency across processes (`limitsConcurrency: true`); the store does not say it does',
    );
    assert.equal(
      resolveOptions({ store: { ...store, limitsConcurrency: true }, maxConcurrent: 2 }).policy.maxConcurrent,
      2,
    );
    assert.equal(
      resolveOptions({ store, queueMs: 100 }).queueMs,
      100,
      'queueMs alone does nothing, and is allowed',
    );
  });
});
