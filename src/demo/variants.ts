/**
 * The breakers of each run of an in-process demo (`Variant`): one per tenant, with escalation to
 * the provider, with adaptive throttling, or one for the downstream with a concurrency limit.
 */
import { adaptiveThrottle } from '../core/policy.js';
import { BreakerFactory } from '../factory.js';
import { BASE_NAME, breakerOptions, tenantBreaker } from './simulation.js';
import type { BreakerSet, Scenario, TenantContext, Variant } from './simulation.js';

/**
 * `--provider-outage`'s escalation: the base name opens for every tenant once more than 30% of
 * its breakers (and at least 5) are open. On the demo's 40 tenants, measured calls to the provider
 * while it was down: 295 without escalation, 178 with 0.5, 162 with 0.3, 146 with 0.1 (docs/demo.md).
 * The lower the fraction, the fewer tenants with troubles of their own can stop every other: 0.3
 * takes 13 of 40.
 */
export const ESCALATION = Object.freeze({ maxOpenFraction: 0.3, minBreakers: 5 });

/**
 * `--downstream-limit`'s throttle: the SRE book's k 2 and padding, over a window short enough for
 * a run of seconds (the default 2 minutes would defer a throttled job by 12 to 24 s, past the
 * run's end: `retryAfterMs` is a tenth to a fifth of the window).
 */
export const THROTTLE = Object.freeze({ windowMs: 2_000 });

/**
 * `--downstream-limit`'s `queueMs`: with more workers than slots, a worker waits this long for a
 * slot (as on a semaphore) before its job is deferred. Deferred at once instead, a job that would
 * have found a slot a few milliseconds later goes to the back of the queue (see docs/demo.md).
 */
export const CONCURRENCY_QUEUE_MS = 50;

/** Short labels of the runs, for the table's header and the progress lines. */
export function variantLabel(variant: Variant, scenario: Scenario, bullmq = false): string {
  switch (variant) {
    case 'none':
      return bullmq ? 'BullMQ retries' : 'retry in worker';
    case 'breakers':
      return 'per-tenant breakers';
    case 'escalation':
      return 'breakers + escalate';
    case 'throttle':
      return 'adaptiveThrottle()';
    case 'concurrency':
      return `maxConcurrent ${scenario.downstreamLimit}`;
  }
}

/**
 * A factory and the breakers of one in-process run of `variant` (none for `none`). `breakers`
 * makes them when the run starts, so their state changes are watched from the first call.
 */
export function variantBreakers(
  variant: Variant,
  scenario: Scenario,
): { readonly factory: BreakerFactory<TenantContext>; readonly breakers: () => BreakerSet } | undefined {
  const options = breakerOptions(scenario, undefined);
  const perTenant = (factory: BreakerFactory<TenantContext>): BreakerSet => ({
    byTenant: Array.from({ length: scenario.tenants }, (_, i) => tenantBreaker(factory, i)),
    perTenant: true,
    shared: [],
  });
  switch (variant) {
    case 'none':
      return undefined;
    case 'breakers': {
      const factory = new BreakerFactory<TenantContext>(options);
      return { factory, breakers: () => perTenant(factory) };
    }
    case 'escalation': {
      const factory = new BreakerFactory<TenantContext>({ ...options, escalate: ESCALATION });
      return {
        factory,
        breakers: () => ({ ...perTenant(factory), shared: [factory.baseBreaker(BASE_NAME)!] }),
      };
    }
    case 'throttle': {
      const factory = new BreakerFactory<TenantContext>({ ...options, trip: adaptiveThrottle(THROTTLE) });
      return { factory, breakers: () => perTenant(factory) };
    }
    case 'concurrency': {
      // The limit is the downstream's, whoever calls: one breaker for it (named `downstream`),
      // every tenant's calls through it. Per tenant, each would get limit / tenants slots, idle
      // whenever its tenant is, and none at all with more tenants than slots.
      const factory = new BreakerFactory<TenantContext>({
        ...options,
        maxConcurrent: scenario.downstreamLimit,
        queueMs: CONCURRENCY_QUEUE_MS,
      });
      return {
        factory,
        breakers: () => {
          const breaker = factory.breakerFor(BASE_NAME);
          return { byTenant: new Array(scenario.tenants).fill(breaker), perTenant: false, shared: [breaker] };
        },
      };
    }
  }
}
