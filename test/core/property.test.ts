import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import * as reducer from '../../src/core/reducer.js';
import type { AcquireResult, Outcome, Override } from '../../src/core/types.js';
import { resolveOptions } from '../../src/options.js';
import { consecutiveFailures } from '../../src/index.js';

// Random operation sequences against the reducer and against a small model written here from
// DESIGN.md (not from the reducer), compared step by step, with the invariants checked after
// every step.

const THRESHOLD = 3;
const OPEN_MS = 1_000;
const MAX_OPEN_MS = 4_000;
const LEASE_MS = 700;

type State = 'closed' | 'open' | 'half-open';

/** The model: what the breaker must do, as plainly as it can be said. */
class Model {
  state: State = 'closed';
  override: Override | null = null;
  generation = 1;
  openUntil = 0;
  reopens = 0;
  runOfFailures = 0;
  probeSuccesses = 0;
  leases = new Map<string, number>();

  constructor(
    readonly maxProbes: number,
    readonly successesToClose: number,
  ) {}

  #forgetExpired(now: number): void {
    for (const [id, expiresAt] of this.leases) if (expiresAt <= now) this.leases.delete(id);
  }

  #open(now: number): void {
    this.reopens = this.state === 'half-open' ? this.reopens + 1 : 0;
    this.state = 'open';
    this.generation += 1;
    this.openUntil = now + Math.min(MAX_OPEN_MS, OPEN_MS * 2 ** this.reopens);
    this.leases.clear();
    this.probeSuccesses = 0;
  }

  acquire(now: number, leaseId: string): { admitted: boolean; reason: string | null; lease: string | null } {
    this.#forgetExpired(now);
    if (this.override === 'forced-open') return { admitted: false, reason: 'forced-open', lease: null };
    if (this.override === 'forced-closed' || this.state === 'closed') {
      return { admitted: true, reason: null, lease: null };
    }
    if (this.state === 'open') {
      if (now < this.openUntil) {
        return this.override === 'metrics-only'
          ? { admitted: true, reason: null, lease: null }
          : { admitted: false, reason: 'open', lease: null };
      }
      this.state = 'half-open';
      this.generation += 1;
      this.openUntil = 0;
      this.probeSuccesses = 0;
      this.leases.clear();
    }
    if (this.leases.size < this.maxProbes) {
      this.leases.set(leaseId, now + LEASE_MS);
      return { admitted: true, reason: null, lease: leaseId };
    }
    if (this.override === 'metrics-only') return { admitted: true, reason: null, lease: null };
    return { admitted: false, reason: 'half-open-full', lease: null };
  }

  record(now: number, generation: number, lease: string | null, outcome: Outcome): void {
    this.#forgetExpired(now);
    if (generation !== this.generation || this.override === 'forced-closed') return;
    if (this.state === 'closed') {
      if (lease !== null) return;
      if (outcome === 'success') this.runOfFailures = 0;
      if (outcome === 'failure') {
        this.runOfFailures += 1;
        if (this.runOfFailures >= THRESHOLD) this.#open(now);
      }
      return;
    }
    if (this.state !== 'half-open' || lease === null || !this.leases.has(lease)) return;
    this.leases.delete(lease);
    if (outcome === 'failure') this.#open(now);
    else if (outcome === 'success' && ++this.probeSuccesses >= this.successesToClose) {
      this.state = 'closed';
      this.generation += 1;
      this.reopens = 0;
      this.runOfFailures = 0;
      this.probeSuccesses = 0;
      this.leases.clear();
    }
  }

  force(override: Override | null): void {
    if (override === this.override) return;
    this.override = override;
    this.generation += 1;
    this.leases.clear();
    this.probeSuccesses = 0;
  }
}

const operation = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('acquire' as const), wait: fc.nat(400) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('settle' as const),
      permit: fc.nat(),
      outcome: fc.constantFrom<Outcome>('success', 'failure', 'failure', 'ignored'),
      wait: fc.nat(400),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('wait' as const), wait: fc.nat(2_500) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('force' as const),
      override: fc.constantFrom<Override | null>(null, null, 'forced-open', 'forced-closed', 'metrics-only'),
    }),
  },
);

describe('the reducer against a model', () => {
  it('agrees on every admission and state, and keeps the invariants', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 2 }),
        fc.array(operation, { minLength: 20, maxLength: 150, size: 'max' }),
        (maxProbes, successesToClose, ops) => {
          const policy = resolveOptions({
            trip: consecutiveFailures(THRESHOLD),
            openMs: OPEN_MS,
            backoff: { multiplier: 2, maxOpenMs: MAX_OPEN_MS },
            jitter: 0,
            halfOpenMaxCalls: maxProbes,
            successThreshold: successesToClose,
            probeLeaseMs: LEASE_MS,
          }).policy;
          const model = new Model(maxProbes, successesToClose);
          const record = reducer.emptyRecord();
          const permits: AcquireResult[] = [];
          let now = 1_700_000_000_000;
          let leaseCount = 0;
          let lastGeneration = record.generation;
          for (const step of ops) {
            if ('wait' in step) now += step.wait;
            if (step.op === 'acquire') {
              const id = `lease-${++leaseCount}`;
              const got = reducer.acquire(record, policy, now, id);
              const expected = model.acquire(now, id);
              assert.equal(got.admitted, expected.admitted, 'admitted');
              assert.equal(got.reason, expected.reason, 'reason');
              assert.equal(got.lease, expected.lease, 'lease');
              if (got.admitted) permits.push(got);
              if (!got.admitted && got.reason === 'open') assert.ok(got.retryAfterMs > 0);
            } else if (step.op === 'settle' && permits.length > 0) {
              const permit = permits.splice(step.permit % permits.length, 1)[0]!;
              const counted = permit.lease === null;
              const failures = counted && step.outcome === 'failure' ? 1 : 0;
              reducer.record(record, policy, now, {
                generation: permit.generation,
                successes: counted && step.outcome === 'success' ? 1 : 0,
                failures,
                trailingFailures: failures,
                slow: 0,
                ignored: counted && step.outcome === 'ignored' ? 1 : 0,
                probes: permit.lease === null ? [] : [{ lease: permit.lease, outcome: step.outcome }],
                random: 0,
              });
              model.record(now, permit.generation, permit.lease, step.outcome);
            } else if (step.op === 'force') {
              reducer.force(record, policy, now, step.override);
              model.force(step.override);
            }
            assert.equal(record.state, model.state, 'state');
            assert.equal(record.override, model.override, 'override');
            assert.equal(record.generation, model.generation, 'generation');
            if (record.state === 'open') assert.equal(record.openUntil, model.openUntil, 'openUntil');
            if (record.state === 'closed' && record.override === null) {
              assert.equal(record.consecutiveFailures, model.runOfFailures, 'run of failures');
            }
            // Invariants.
            const live = record.leases.filter((lease) => lease.expiresAt > now).length;
            assert.ok(live <= maxProbes, 'never more live leases than halfOpenMaxCalls');
            assert.ok(record.generation >= lastGeneration, 'the generation never decreases');
            lastGeneration = record.generation;
            assert.ok(record.buckets.every((b) => b.successes >= 0 && b.failures >= 0 && b.ignored >= 0));
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('an open breaker never admits a call without an override that says so', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(999), { maxLength: 50 }), (waits) => {
        const policy = resolveOptions({ trip: consecutiveFailures(1), openMs: 60_000, jitter: 0 }).policy;
        const record = reducer.emptyRecord();
        let now = 1_000;
        const { generation } = reducer.acquire(record, policy, now, 'a');
        reducer.record(record, policy, now, {
          generation,
          successes: 0,
          failures: 1,
          trailingFailures: 1,
          slow: 0,
          ignored: 0,
          probes: [],
          random: 0,
        });
        for (const wait of waits) {
          now += wait;
          const result = reducer.acquire(record, policy, now, `l${now}`);
          assert.equal(result.admitted, false);
          assert.equal(result.retryAfterMs, record.openUntil - now);
        }
      }),
    );
  });
});
