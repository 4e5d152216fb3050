import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import { consecutiveFailures } from '../../src/index.js';
import type { BreakerPolicy, Snapshot } from '../../src/index.js';
import { policyOf } from '../../src/testing/conformance.js';
import type { StoreSpec } from './store-spec.js';

// The quorum across real processes (issue 25), for every store: each test file passes where its
// store is (test/redis/quorum.test.ts and its Postgres and DynamoDB siblings).

interface Tally {
  ran: number;
  failed: number;
  reasons: Record<string, number>;
}
interface Transition {
  name: string;
  from: string;
  to: string;
  local: boolean;
}

export class Fleet {
  readonly transitions: Transition[][] = [];
  private constructor(readonly children: ChildProcess[]) {}

  static async start(n: number, spec: StoreSpec, quorum: object | false): Promise<Fleet> {
    const children = Array.from({ length: n }, () =>
      fork(
        new URL('./quorum-worker.ts', import.meta.url).pathname,
        [JSON.stringify(spec), JSON.stringify(quorum)],
        {
          execArgv: ['--import', 'tsx'],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        },
      ),
    );
    const fleet = new Fleet(children);
    await Promise.all(
      children.map(
        (child, i) =>
          new Promise<void>((resolve, reject) => {
            fleet.transitions[i] = [];
            child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
            child.on('message', (m: { ready?: true; transition?: Transition }) => {
              if (m.ready) resolve();
              if (m.transition) fleet.transitions[i]!.push(m.transition);
            });
          }),
      ),
    );
    return fleet;
  }

  run(i: number, load: { name: string; calls: number; fail: boolean; delayMs: number }): Promise<Tally> {
    const child = this.children[i]!;
    return new Promise((resolve) => {
      const onMessage = (m: { tally?: Tally }): void => {
        if (m.tally === undefined) return;
        child.off('message', onMessage);
        resolve(m.tally);
      };
      child.on('message', onMessage);
      child.send({ cmd: 'run', ...load });
    });
  }

  /** Every process calls once (and so tells the store it is active), then a moment passes. */
  async warmUp(): Promise<void> {
    await Promise.all(
      this.children.map((_, i) => this.run(i, { name: 'warm', calls: 1, fail: false, delayMs: 0 })),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            child.removeAllListeners('exit');
            child.once('exit', () => resolve());
            child.send({ cmd: 'stop' });
          }),
      ),
    );
  }
}

/**
 * Four real processes share one breaker (issue 25). With a quorum, one process whose calls all
 * fail opens only for itself; when every process fails, the shared open comes after as many
 * failures as without a quorum. `setUp` registers the hooks that start the store and returns
 * where the workers find it and how the test reads a breaker's state.
 */
export function describeQuorumFleet(
  label: string,
  setUp: () => {
    spec: () => StoreSpec;
    inspect: (name: string, policy: BreakerPolicy) => Promise<Snapshot | null>;
    /** The store merges a process's writes to one breaker that wait for each other (DynamoDB). */
    mergesWrites?: boolean;
  },
): void {
  describe(`quorum across 4 processes on ${label}`, { timeout: 120_000 }, () => {
    const { spec, inspect, mergesWrites } = setUp();
    const policy = policyOf({ trip: consecutiveFailures(5), openMs: 60_000 });

    for (const quorum of [{ minReporters: 2, minFraction: 0.5 }, false] as const) {
      it(`one sick process ${quorum === false ? 'opens the breaker for everyone without' : 'opens only for itself with'} a quorum`, async () => {
        const name = `api-${randomUUID()}`;
        const fleet = await Fleet.start(4, spec(), quorum);
        try {
          await fleet.warmUp();
          // The sick process fails on its own first (so its failures are in a row, whatever the
          // machine's load), then keeps failing while the others call.
          const first = await fleet.run(0, { name, calls: 10, fail: true, delayMs: 1 });
          const [then, ...well] = await Promise.all([
            fleet.run(0, { name, calls: 20, fail: true, delayMs: 1 }),
            ...[1, 2, 3].map((i) => fleet.run(i, { name, calls: 30, fail: false, delayMs: 5 })),
          ]);
          const sick = { reasons: { ...first.reasons } };
          for (const [reason, n] of Object.entries(then.reasons)) {
            sick.reasons[reason] = (sick.reasons[reason] ?? 0) + n;
          }
          const snapshot = await inspect(name, policy);
          if (quorum === false) {
            assert.equal(snapshot?.state, 'open', 'without a quorum the sick process opens it for all');
            assert.ok(
              well.some((t) => (t.reasons.open ?? 0) > 0),
              JSON.stringify(well),
            );
            return;
          }
          assert.ok(
            (sick.reasons['local-open'] ?? 0) > 0,
            `the sick process rejects its own calls: ${JSON.stringify(sick)}`,
          );
          assert.equal(sick.reasons.open ?? 0, 0);
          for (const tally of well) {
            assert.deepEqual(tally.reasons, {}, 'the others are never rejected');
            assert.equal(tally.ran, 30);
          }
          assert.notEqual(snapshot?.state, 'open', 'the shared breaker never opened');
          assert.ok(fleet.transitions[0]!.some((t) => t.to === 'open' && t.local));
          for (const i of [1, 2, 3]) assert.deepEqual(fleet.transitions[i], [], 'nothing reached the others');
        } finally {
          await fleet.stop();
        }
      });
    }

    it('every process failing: the shared open comes after as many failures as without a quorum', async () => {
      const counted: number[] = [];
      for (const quorum of [{ minReporters: 2, minFraction: 0.5 }, false] as const) {
        const name = `api-${randomUUID()}`;
        const fleet = await Fleet.start(4, spec(), quorum);
        try {
          await fleet.warmUp();
          const tallies = await Promise.all(
            [0, 1, 2, 3].map((i) => fleet.run(i, { name, calls: 10, fail: true, delayMs: 20 })),
          );
          const snapshot = await inspect(name, policy);
          assert.equal(snapshot?.state, 'open', JSON.stringify(tallies));
          assert.ok(
            tallies.every((t) => (t.reasons['local-open'] ?? 0) === 0),
            JSON.stringify(tallies),
          );
          // Failures counted before the open: the calls in flight when it opened are stale.
          counted.push(snapshot.counts.failures);
        } finally {
          await fleet.stop();
        }
      }
      if (mergesWrites !== true) {
        assert.equal(counted[0], 5, `with a quorum: ${counted[0]} failures counted`);
        assert.equal(counted[1], 5, `without: ${counted[1]}`);
      } else {
        // A process's failures written while its previous write is under way go in one write:
        // the one that trips the policy may carry more than the fifth.
        for (const n of counted) assert.ok(n >= 5 && n <= 8, `${JSON.stringify(counted)} failures counted`);
      }
    });
  });
}
