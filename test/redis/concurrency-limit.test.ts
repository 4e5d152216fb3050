import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { consecutiveFailures } from '../../src/index.js';
import { breakerKey } from '../../src/stores/redis/keys.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { policyOf } from '../../src/testing/conformance.js';
import { readRecord } from '../helpers/redis-record.js';
import type { RedisServer } from '../helpers/redis-server.js';
import { useRedisServer } from '../helpers/redis-server.js';
import { Workers, sum } from '../helpers/workers.js';

// maxConcurrent across processes, on one redis-server: 8 worker processes, each with 20 callers,
// make 10,080 calls to a local HTTP server that counts the requests in flight. The dependency must never see more
// than maxConcurrent at once; a process killed while it holds slots must not hold them past
// concurrencyLeaseMs.

const WORKERS = 8;
const CALLERS = 20;
/** Calls per caller: 10,080 calls in all. */
const CALLS = 63;
const LIMIT = 8;
const LEASE_MS = 3_000;
const SETTINGS = {
  threshold: 1_000, // never trips: this test is about the limit
  openMs: 1_000,
  halfOpenMaxCalls: 1,
  maxConcurrent: LIMIT,
  concurrencyLeaseMs: LEASE_MS,
  // Long enough that a caller waits for a slot rather than being turned away, on a busy machine.
  queueMs: 10_000,
};

/** The dependency: answers each GET after `holdMs`, counting the requests in flight. */
class CountingServer {
  inFlight = 0;
  most = 0;
  served = 0;
  readonly #server: Server;
  constructor(holdMs: number) {
    this.#server = createServer((request, response) => {
      this.inFlight += 1;
      this.most = Math.max(this.most, this.inFlight);
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        this.inFlight -= 1;
      };
      response.on('close', finish);
      setTimeout(() => {
        this.served += 1;
        // Counted out before the answer leaves: the caller's slot is freed only after it arrives.
        finish();
        response.end('ok');
      }, holdMs);
      request.resume();
    });
  }
  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/`;
  }
  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

describe(
  `maxConcurrent ${LIMIT} across ${WORKERS} processes x ${CALLERS} callers on Redis`,
  { timeout: 120_000 },
  () => {
    let server: RedisServer;
    let client: Redis;
    useRedisServer((s, c) => {
      server = s;
      client = c;
    });
    const dependency = new CountingServer(2);
    let url: string;
    let workers: Workers;
    const prefix = `cl-${randomUUID()}:`;
    const policy = policyOf({
      trip: consecutiveFailures(SETTINGS.threshold),
      openMs: SETTINGS.openMs,
      maxConcurrent: LIMIT,
      concurrencyLeaseMs: LEASE_MS,
    });
    before(async () => {
      url = await dependency.listen();
      workers = await Workers.start(WORKERS, CALLERS, { kind: 'redis', url: server.url, prefix }, SETTINGS);
    });
    after(async () => {
      await workers?.stop();
      await dependency.close();
    });

    it('the dependency never sees more than maxConcurrent calls at once, and every slot is given back', async () => {
      const tallies = await workers.run({
        name: 'dep',
        callsPerCaller: CALLS,
        failEvery: 0,
        fnDelayMs: 0,
        url,
      });
      assert.equal(sum(tallies, 'other'), 0, JSON.stringify(tallies));
      assert.equal(sum(tallies, 'boom'), 0);
      assert.equal(sum(tallies, 'value'), dependency.served);
      assert.equal(sum(tallies, 'value') + sum(tallies, 'rejected'), WORKERS * CALLERS * CALLS);
      assert.ok(
        tallies.every((t) => Object.keys(t.reasons).every((reason) => reason === 'concurrency-limit')),
        JSON.stringify(tallies.map((t) => t.reasons)),
      );
      assert.ok(dependency.most <= LIMIT, `the dependency saw ${dependency.most} calls at once`);
      assert.equal(dependency.most, LIMIT, 'the limit was reached (else this test proves nothing)');
      assert.ok(dependency.served >= 10_000, `the dependency served ${dependency.served} calls`);
      const store = new RedisStore({ client, prefix });
      assert.equal((await store.inspect('dep', policy))?.activeSlots, 0);
    });

    it('slots held by a process killed mid-call are freed after concurrencyLeaseMs, and only then', async () => {
      const store = new RedisStore({ client, prefix });
      const name = 'killed';
      workers.hold(0, name, LIMIT);
      // The victim's calls hold every slot (their fn never returns).
      for (let i = 0; (await store.inspect(name, policy))?.activeSlots !== LIMIT; i++) {
        assert.ok(i < 500, 'the victim took every slot');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await workers.kill(0);
      // Every lease ends at most concurrencyLeaseMs after now, in the server's time.
      const [seconds, micros] = (await client.time()) as [number | string, number | string];
      const now = Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000);
      const record = await readRecord(client, breakerKey(prefix, name), policy.bucketMs);
      const ends = record!.slots.map((slot) => slot.expiresAt);
      assert.equal(ends.length, LIMIT);
      assert.ok(
        ends.every((end) => end > now && end <= now + LEASE_MS),
        `${ends.map((e) => e - now).join(',')} ms left`,
      );
      // Meanwhile every other caller is turned away: the dead process's calls still count.
      const turnedAway = await store.acquire(name, policy);
      assert.equal(turnedAway.reason, 'concurrency-limit');
      assert.ok(turnedAway.retryAfterMs <= Math.min(...ends) - now, `${turnedAway.retryAfterMs}`);
      // Once the last lease has ended (the server's time), the slots are free, everywhere.
      const last = Math.max(...ends);
      for (;;) {
        const [s, u] = (await client.time()) as [number | string, number | string];
        if (Number(s) * 1_000 + Math.floor(Number(u) / 1_000) > last) break;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assert.equal((await store.inspect(name, policy))?.activeSlots, 0);
      const after = await workers.run({ name, callsPerCaller: 1, failEvery: 0, fnDelayMs: 0, url });
      assert.ok(
        sum(after, 'value') >= LIMIT,
        `${sum(after, 'value')} ran once the dead process's slots expired`,
      );
      assert.equal((await store.inspect(name, policy))?.activeSlots, 0);
    });
  },
);
