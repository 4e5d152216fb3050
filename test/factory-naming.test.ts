import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { BreakerFactory, InvalidOptionError, consecutiveFailures, isCircuitOpenError } from '../src/index.js';

// Issue 24: a factory without a `name` option used to name every breaker by its base name, so
// two tenants' calls silently shared one breaker. The default now names by tenant and origin,
// and refuses a context it cannot name.

const fail = (): Promise<never> => Promise.reject(new Error('down'));
const ok = (): Promise<string> => Promise.resolve('value');

function isInvalid(option: string, message: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof InvalidOptionError, `expected InvalidOptionError, got ${String(error)}`);
    assert.equal(error.code, 'INVALID_OPTION');
    assert.equal(error.option, option);
    assert.match(error.message, message);
    return true;
  };
}

describe('the default breaker name', () => {
  it('is the base name without a context, then /tenantId, then /origin', () => {
    const factory = new BreakerFactory<{ tenantId?: string | number; origin?: string }>();
    assert.equal(factory.breakerFor('api').name, 'api');
    assert.equal(factory.breakerFor('api', { tenantId: 'a' }).name, 'api/a');
    assert.equal(factory.breakerFor('api', { tenantId: 42 }).name, 'api/42');
    assert.equal(factory.breakerFor('api', { origin: 'https://x.test' }).name, 'api/https://x.test');
    assert.equal(
      factory.breakerFor('api', { tenantId: 'a', origin: 'https://x.test' }).name,
      'api/a/https://x.test',
    );
    assert.equal(
      factory.breakerFor('api', { origin: 'https://x.test', tenantId: 'a' }).name,
      'api/a/https://x.test',
      'the order of the fields in the object does not matter',
    );
    assert.equal(
      factory.breakerFor('api', { tenantId: 'a', origin: undefined }).name,
      'api/a',
      'undefined is absent',
    );
    assert.equal(factory.breakerFor('api', {}).name, 'api', 'an empty context is no context');
  });

  it('gives two tenants two breakers: one tripping never rejects the other', async () => {
    const factory = new BreakerFactory<{ tenantId: string }>({ trip: consecutiveFailures(1) });
    const a = factory.breakerFor('api', { tenantId: 'a' });
    const b = factory.breakerFor('api', { tenantId: 'b' });
    assert.notEqual(a, b);
    await assert.rejects(a.execute(fail), /down/);
    await assert.rejects(a.execute(ok), (e: unknown) => isCircuitOpenError(e));
    assert.equal(await b.execute(ok), 'value');
    assert.equal(factory.breakerFor('api', { tenantId: 'a' }), a, 'one object per name');
    assert.deepEqual(a.context, { tenantId: 'a' });
    assert.equal(a.baseName, 'api');
  });

  it('refuses a context with another field, naming the `name` option and the field', () => {
    const factory = new BreakerFactory<Record<string, unknown>>();
    assert.throws(
      () => factory.breakerFor('api', { tenant: 'a' }),
      isInvalid('name', /breakerFor\("api", context\).*`tenant`.*pass a `name` option/),
    );
    assert.throws(
      () => factory.breakerFor('api', { tenantId: 'a', region: 'eu' }),
      isInvalid('name', /`region`/),
      'an extra field could tell breakers apart: not ignored',
    );
    assert.equal(factory.size, 0, 'nothing was made');
  });

  it('refuses a context that is not an object', () => {
    const factory = new BreakerFactory<unknown>();
    for (const context of [null, 'tenant-a', 7]) {
      assert.throws(
        () => factory.breakerFor('api', context),
        isInvalid(
          'name',
          /knows a context of `\{ tenantId\?, origin\? \}` only, got `.*` \((null|string|number)\)/,
        ),
      );
    }
  });

  it('checks tenantId and origin, saying what it was given', () => {
    const factory = new BreakerFactory<{ tenantId?: unknown; origin?: unknown }>();
    for (const [tenantId, shown] of [
      ['', '`""` (string)'],
      ['a/b', '`"a/b"` (string)'],
      [Number.NaN, '`NaN` (number)'],
      [{ id: 1 }, '`{"id":1}` (object)'],
      [true, '`true` (boolean)'],
      ['*', '`"*"` (string)'],
    ] as const) {
      assert.throws(
        () => factory.breakerFor('api', { tenantId }),
        isInvalid(
          'context.tenantId',
          new RegExp(
            `Expected \`context.tenantId\`.* to be a non-empty string without "/" \\(and not "\\*", the name of a base breaker\\) or a finite number, got ${shown.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`,
          ),
        ),
      );
    }
    for (const origin of ['', 42, null, '*']) {
      assert.throws(
        () => factory.breakerFor('api', { origin }),
        isInvalid(
          'context.origin',
          /Expected `context.origin`.* to be a non-empty string other than "\*".*, got/,
        ),
      );
    }
  });

  it('a tenant id with a slash cannot share a breaker with a tenant and an origin', () => {
    const factory = new BreakerFactory<{ tenantId: string; origin?: string }>();
    const both = factory.breakerFor('api', { tenantId: 'a', origin: 'b' });
    assert.equal(both.name, 'api/a/b');
    assert.throws(() => factory.breakerFor('api', { tenantId: 'a/b' }), InvalidOptionError);
  });

  it('finds a tenant breaker again by its tenant id, and forgets it when the LRU drops it', () => {
    const factory = new BreakerFactory<{ tenantId?: string | number; origin?: string; region?: string }>({
      maxBreakers: 3,
    });
    const a = factory.breakerFor('api', { tenantId: 'a' });
    assert.equal(factory.breakerFor('api', { tenantId: 'a' }), a);
    assert.equal(factory.breakerFor('api/a'), a, 'the same name is the same breaker, however asked for');
    assert.equal(factory.breakerFor('api', { origin: 'a' }), a, '{ origin } names it the same way');
    assert.notEqual(factory.breakerFor('sync', { tenantId: 'a' }), a, 'another base name, another breaker');
    assert.throws(
      () => factory.breakerFor('api', { tenantId: 'a', region: 'eu' }),
      isInvalid('name', /region/),
      'a context with another field is refused even when its tenant has a breaker',
    );
    for (let i = 0; i < 5; i++) factory.breakerFor('other', { tenantId: i });
    const again = factory.breakerFor('api', { tenantId: 'a' });
    assert.notEqual(again, a, 'dropped by the LRU: a new object, not the dropped one');
    assert.equal(factory.breakerFor('api', { tenantId: 'a' }), again);
    assert.ok(factory.size <= 3);
  });

  it('refuses a base name that is not one before looking for the tenant', () => {
    const factory = new BreakerFactory<{ tenantId: string }>();
    const a = factory.breakerFor('api', { tenantId: 'a' });
    for (const baseName of ['', undefined, null, 1]) {
      assert.throws(
        () => factory.breakerFor(baseName as unknown as string, { tenantId: 'a' }),
        TypeError,
        `base name ${String(baseName)}`,
      );
    }
    assert.equal(factory.breakerFor('api', { tenantId: 'a' }), a, 'the tenant is found again after them');
  });

  it('a `name` option still decides, for any context', () => {
    const factory = new BreakerFactory<{ tenant: string }>({
      name: (base, context) => `${base}:${context?.tenant ?? '-'}`,
    });
    assert.equal(factory.breakerFor('api', { tenant: 'a' }).name, 'api:a');
    assert.equal(factory.breakerFor('api').name, 'api:-');
  });
});
