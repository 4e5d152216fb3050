import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  BreakerFactory,
  CircuitBreaker,
  InvalidOptionError,
  MemoryStore,
  consecutiveFailures,
  isCircuitOpenError,
} from '../src/index.js';
import type { BreakerOptions } from '../src/index.js';
import { ManualClock } from '../src/testing/manual-clock.js';
import { seededRandom } from '../src/testing/seeded-random.js';

// Issue 25: a provider outage is seen as one. When enough of a base name's breakers are open, the
// base name opens: every tenant rejects with 'base-open', one probe decides, tenants resume.

const fail = (): Promise<never> => Promise.reject(new Error('provider down'));
const ok = (): Promise<string> => Promise.resolve('ok');

function factoryWith(clock: ManualClock, options: BreakerOptions<{ tenantId: string }> = {}) {
  return new BreakerFactory<{ tenantId: string }>({
    clock,
    store: new MemoryStore({ clock }),
    trip: consecutiveFailures(5),
    openMs: 5_000,
    backoff: { multiplier: 2, maxOpenMs: 60_000 },
    jitter: 0.1,
    ...options,
  });
}

/**
 * 1,000 tenants of one base name, a job every 5 ms for a tenant drawn at random, for `outageMs`
 * with the provider down, then 3 minutes with it up. Counts calls that reached the
 * provider while it was down, rejections by reason, and whether every tenant ran a job after.
 */
async function outage(factory: BreakerFactory<{ tenantId: string }>, clock: ManualClock, outageMs: number) {
  const tenants = 1_000;
  const random = seededRandom(7);
  let down = true;
  let callsWhileDown = 0;
  const reasons: Record<string, number> = {};
  const recovered = new Set<string>();
  const run = async (tenant: string): Promise<void> => {
    try {
      await factory.breakerFor('provider', { tenantId: tenant }).execute(() => {
        if (down) {
          callsWhileDown += 1;
          return fail();
        }
        recovered.add(tenant);
        return ok();
      });
    } catch (error) {
      if (isCircuitOpenError(error)) reasons[error.reason] = (reasons[error.reason] ?? 0) + 1;
    }
  };
  // One job every 5 ms, each for a tenant drawn at random: on average one per tenant every 5 s.
  const jobs = async (ms: number): Promise<void> => {
    for (let t = 0; t < ms; t += 5) {
      await run(`t${Math.floor(random() * tenants)}`);
      clock.advance(5);
    }
  };
  await jobs(outageMs);
  down = false;
  await jobs(180_000);
  // Every tenant's next job runs once its breaker (and the base name) admit it again.
  for (let i = 0; i < tenants; i++) await run(`t${i}`);
  return { callsWhileDown, reasons, recovered: recovered.size };
}

describe('escalation to the provider (escalate)', () => {
  it('a 15-minute outage of a provider of 1,000 tenants costs at least 10x fewer calls with escalation', async () => {
    const plainClock = new ManualClock();
    const plain = await outage(factoryWith(plainClock), plainClock, 900_000);
    const clock = new ManualClock();
    const factory = factoryWith(clock, { escalate: { maxOpenFraction: 0.02, minBreakers: 20 } });
    const escalated = await outage(factory, clock, 900_000);
    console.log(
      `calls to the provider while down: ${plain.callsWhileDown} without escalation, ${escalated.callsWhileDown} with (${(plain.callsWhileDown / escalated.callsWhileDown).toFixed(1)}x); rejections ${JSON.stringify(plain.reasons)} / ${JSON.stringify(escalated.reasons)}`,
    );
    assert.ok(
      escalated.callsWhileDown * 10 <= plain.callsWhileDown,
      `${escalated.callsWhileDown} with escalation, ${plain.callsWhileDown} without`,
    );
    assert.ok((escalated.reasons['base-open'] ?? 0) > 0);
    assert.equal(plain.recovered, 1_000, 'every tenant recovers without escalation');
    assert.equal(escalated.recovered, 1_000, 'every tenant recovers after the base name closes');
    assert.equal((await factory.baseBreaker('provider')?.state())?.state, 'closed');
  });

  it('opens the base name for a tenant never seen before, and one probe closes it', async () => {
    const clock = new ManualClock();
    const transitions: string[] = [];
    const factory = factoryWith(clock, {
      escalate: { maxOpenFraction: 0.5, minBreakers: 3 },
      onStateChange: (name, _context, from, to) => transitions.push(`${name}: ${from} -> ${to}`),
    });
    for (const tenant of ['a', 'b', 'c', 'd']) {
      for (let i = 0; i < 5; i++) {
        await factory
          .breakerFor('api', { tenantId: tenant })
          .execute(fail)
          .catch(() => undefined);
      }
      clock.advance(100);
    }
    assert.ok(transitions.includes('api/*: closed -> open'), transitions.join('; '));
    const base = factory.baseBreaker('api');
    assert.equal((await base?.state())?.state, 'open');
    await assert.rejects(factory.breakerFor('api', { tenantId: 'new' }).execute(ok), (error: unknown) => {
      assert.ok(isCircuitOpenError(error));
      assert.equal(error.reason, 'base-open');
      assert.ok(error.retryAfterMs > 0 && error.retryAfterMs <= 5_500, `${error.retryAfterMs}`);
      return true;
    });
    // The base name's open period passes: one probe (a healthy tenant's call) closes it.
    clock.advance(6_000);
    let probes = 0;
    const calls = await Promise.allSettled(
      ['new', 'other', 'third'].map((tenant) =>
        factory.breakerFor('api', { tenantId: tenant }).execute(() => {
          probes += 1;
          return ok();
        }),
      ),
    );
    assert.equal(probes, 1, 'one probe for the base name, not one per tenant');
    assert.equal(calls.filter((c) => c.status === 'rejected').length, 2);
    assert.equal((await base?.state())?.state, 'closed');
    assert.ok(transitions.includes('api/*: half-open -> closed'), transitions.join('; '));
    // Tenants resume from their own state: a healthy one runs, an open one is still its own.
    assert.equal(await factory.breakerFor('api', { tenantId: 'other' }).execute(ok), 'ok');
    // And the open tenants that opened it do not open it again at once.
    await factory
      .breakerFor('api', { tenantId: 'a' })
      .execute(ok)
      .catch(() => undefined);
    assert.equal((await base?.state())?.state, 'closed');
    await factory.close();
  });

  it('a base probe its tenant turned away says nothing of how long probes take (the base-open hint)', async () => {
    const clock = new ManualClock();
    const factory = factoryWith(clock, { escalate: { maxOpenFraction: 0.5, minBreakers: 2 }, jitter: 0 });
    for (const tenant of ['b', 'c', 'd']) {
      for (let i = 0; i < 5; i++) {
        await factory
          .breakerFor('api', { tenantId: tenant })
          .execute(fail)
          .catch(() => undefined);
      }
    }
    assert.equal((await factory.baseBreaker('api')?.state())?.state, 'open');
    // Tenant a is forced open by an operator: each base probe it takes is given back unused.
    await factory.breakerFor('api', { tenantId: 'a' }).force('forced-open');
    clock.advance(5_000);
    for (let i = 0; i < 20; i++) {
      await factory
        .breakerFor('api', { tenantId: 'a' })
        .execute(ok)
        .catch(() => undefined);
    }
    let release!: () => void;
    const running = factory.breakerFor('api', { tenantId: 'x' }).execute(
      () =>
        new Promise<string>((resolve) => {
          release = () => resolve('ok');
        }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    await assert.rejects(factory.breakerFor('api', { tenantId: 'y' }).execute(ok), (error: unknown) => {
      assert.ok(isCircuitOpenError(error));
      assert.equal(error.reason, 'base-open');
      assert.ok(error.retryAfterMs >= 100, `retryAfterMs ${error.retryAfterMs}: a hint, not a spin`);
      return true;
    });
    release();
    assert.equal(await running, 'ok');
    await factory.close();
  });

  it('a failed probe opens the base name again, with backoff', async () => {
    const clock = new ManualClock();
    const factory = factoryWith(clock, { escalate: { maxOpenFraction: 0.5, minBreakers: 2 }, jitter: 0 });
    for (const tenant of ['a', 'b', 'c']) {
      for (let i = 0; i < 5; i++) {
        await factory
          .breakerFor('api', { tenantId: tenant })
          .execute(fail)
          .catch(() => undefined);
      }
    }
    const base = factory.baseBreaker('api');
    assert.equal((await base?.state())?.state, 'open');
    clock.advance(5_000);
    await assert.rejects(factory.breakerFor('api', { tenantId: 'z' }).execute(fail), /provider down/);
    const snapshot = await base?.state();
    assert.equal(snapshot?.state, 'open');
    assert.equal(snapshot?.retryAfterMs, 10_000, 'the second open lasts twice as long');
    await factory.close();
  });

  it('leaves a base name alone while fewer than minBreakers are held or too few are open', async () => {
    const clock = new ManualClock();
    const factory = factoryWith(clock, { escalate: { maxOpenFraction: 0.5, minBreakers: 4 } });
    for (const tenant of ['a', 'b', 'c']) {
      for (let i = 0; i < 6; i++) {
        await factory
          .breakerFor('api', { tenantId: tenant })
          .execute(fail)
          .catch(() => undefined);
      }
    }
    assert.equal(
      (await factory.baseBreaker('api')?.state())?.state,
      'closed',
      'three held: below minBreakers',
    );
    for (const tenant of ['d', 'e', 'f', 'g'])
      await factory.breakerFor('api', { tenantId: tenant }).execute(ok);
    for (let i = 0; i < 6; i++) {
      await factory
        .breakerFor('api', { tenantId: 'a' })
        .execute(fail)
        .catch(() => undefined);
    }
    assert.equal(
      (await factory.baseBreaker('api')?.state())?.state,
      'closed',
      '3 of 7 open: not more than half',
    );
    assert.equal(await factory.breakerFor('api', { tenantId: 'd' }).execute(ok), 'ok');
    await factory.close();
  });

  it('is off by default, per base name through byBaseName, and a factory option only', () => {
    const factory = new BreakerFactory({ byBaseName: { pay: { escalate: { minBreakers: 2 } } } });
    assert.equal(factory.baseBreaker('api'), null);
    assert.equal(factory.baseBreaker('pay')?.name, 'pay/*');
    assert.throws(
      () => new CircuitBreaker('x', { escalate: {} }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'escalate',
    );
    assert.throws(
      () => new BreakerFactory({ escalate: { maxOpenFraction: 2 } }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'escalate.maxOpenFraction',
    );
    assert.throws(
      () => new BreakerFactory({ escalate: { minBreakers: 0 } }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'escalate.minBreakers',
    );
    assert.throws(
      () => factory.breakerFor('pay', { tenantId: '*' }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'context.tenantId',
    );
  });
});
