// circuitry/bullmq: run BullMQ jobs through circuit breakers. The only module that imports bullmq.
export { withBreaker, deferralsOf } from './with-breaker.js';
export { TooManyDeferralsError, isTooManyDeferralsError } from './errors.js';
export type { DeferRule, DeferralJitter, GuardingBreaker, WithBreakerOptions } from './options.js';
