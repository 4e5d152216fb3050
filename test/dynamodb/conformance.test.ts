import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';

import { PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

import { DynamoDBStore, createBreakerTable } from '../../src/stores/dynamodb/index.js';
import { itemKey } from '../../src/stores/dynamodb/dynamodb-store.js';
import { describeStoreConformance, outcomes, policyOf } from '../../src/testing/conformance.js';
import type { CorruptionKind } from '../../src/testing/conformance.js';
import { ManualClock } from '../../src/testing/manual-clock.js';
import {
  BreakerFactory,
  MemoryStore,
  consecutiveFailures,
  failureRate,
  failuresInWindow,
  isCircuitOpenError,
} from '../../src/index.js';
import type { BreakerPolicy, Snapshot, TripPolicy } from '../../src/index.js';
import { useDynalite } from '../helpers/dynalite.js';
import type { Dynalite } from '../helpers/dynalite.js';

const TABLE = 'circuitry-conformance';

async function corrupt(client: DynamoDBClient, name: string, kind: CorruptionKind): Promise<void> {
  const set = (expression: string, values: Record<string, { S: string } | { N: string }>) =>
    client.send(
      new UpdateItemCommand({
        TableName: TABLE,
        Key: { pk: { S: itemKey(name) } },
        UpdateExpression: expression,
        ExpressionAttributeValues: values,
      }),
    );
  switch (kind) {
    case 'garbage':
      await client.send(
        new PutItemCommand({ TableName: TABLE, Item: { pk: { S: itemKey(name) }, rec: { N: '7' } } }),
      );
      return;
    case 'missing-field':
      await set('SET rec = :r', { ':r': { S: JSON.stringify({ schema: 1, state: 'open' }) } });
      return;
    case 'wrong-type':
      await set('SET rec = :r', { ':r': { S: '{"schema":1,"state":"open","generation":"seven"}' } });
      return;
    case 'foreign-schema':
      await set('SET rec = :r', { ':r': { S: '{"schema":99}' } });
      return;
  }
}

/**
 * Holds back the requests of `client` that `holds` picks (by their input) until released: each
 * held request's release function is pushed on the returned array.
 */
function holdBack(
  client: DynamoDBClient,
  holds: (input: Record<string, unknown>) => boolean,
): Array<() => void> {
  const held: Array<() => void> = [];
  client.middlewareStack.add(
    (next) => async (args) => {
      if (holds(args.input as Record<string, unknown>))
        await new Promise<void>((resolve) => held.push(resolve));
      return next(args);
    },
    { step: 'initialize' },
  );
  return held;
}

/** The commands `client` sends from now on, by name (`UpdateItem`, ...), in the order sent. */
function commandLog(client: DynamoDBClient): string[] {
  const commands: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      commands.push(context.commandName!.replace(/Command$/, ''));
      return next(args);
    },
    { step: 'initialize' },
  );
  return commands;
}

type Outcomes = Parameters<typeof outcomes>[1];

/**
 * A snapshot's state and the counts its policy reads, as one string to compare (the run and the
 * failures; successes too under a failure rate: under a count policy a store need not count them).
 */
function summary(policy: BreakerPolicy, snapshot: Snapshot | null): string {
  if (snapshot === null) return 'no record';
  const c = snapshot.counts;
  const successes = policy.trip.kind === 'failure-rate' ? `, ${c.successes} successes` : '';
  return `${snapshot.state}, run ${c.consecutiveFailures}, ${c.failures} failures${successes}`;
}

/**
 * What a MemoryStore (the reference) holds after `before`, then `batches` in this order, each
 * admitted under the generation after `before`: the summary, each batch's stale flag, and whether
 * one of them opened the breaker.
 */
function inOrder(
  policy: BreakerPolicy,
  before: Outcomes,
  batches: readonly Outcomes[],
): { state: string; stale: boolean[]; opened: boolean } {
  const store = new MemoryStore();
  const name = 'reference';
  const { generation } = store.acquire(name, policy);
  store.record(name, policy, outcomes(generation, before));
  const g = store.acquire(name, policy).generation;
  const stale: boolean[] = [];
  let opened = false;
  for (const batch of batches) {
    const result = store.record(name, policy, outcomes(g, batch));
    stale.push(result.stale);
    opened ||= result.transition?.to === 'open';
  }
  return { state: summary(policy, store.inspect(name, policy)), stale, opened };
}

describe('DynamoDBStore on dynalite', () => {
  let server: Dynalite;
  let client: DynamoDBClient;
  useDynalite(TABLE, (s, c) => {
    server = s;
    client = c;
  });

  describeStoreConformance(
    'DynamoDBStore',
    () => {
      const clock = new ManualClock();
      return {
        store: new DynamoDBStore({ client, tableName: TABLE, clock, onCorruptRecord: () => undefined }),
        advance: (ms) => clock.advance(ms),
        corrupt: (name, kind) => corrupt(client, name, kind),
      };
    },
    { idempotentBatches: true, concurrencyLimit: true, quorum: true, recordThenAcquire: true },
  );

  // The same suite where a failed condition hands the item back, as DynamoDB does and dynalite does
  // not: a refused count's general path starts from that item.
  let awsLike: DynamoDBClient | undefined;
  after(() => awsLike?.destroy());
  describeStoreConformance(
    'DynamoDBStore, a failed condition answered with the item',
    () => {
      const clock = new ManualClock();
      awsLike ??= server.awsLikeClient();
      return {
        store: new DynamoDBStore({
          client: awsLike,
          tableName: TABLE,
          clock,
          onCorruptRecord: () => undefined,
        }),
        advance: (ms) => clock.advance(ms),
        corrupt: (name, kind) => corrupt(client, name, kind),
      };
    },
    { idempotentBatches: true, concurrencyLimit: true, quorum: true, recordThenAcquire: true },
  );

  it('a refused count starts from the item the refusal handed back: no read where DynamoDB answers with it', async () => {
    const counting = server.awsLikeClient();
    const commands = commandLog(counting);
    const store = new DynamoDBStore({ client: counting, tableName: TABLE });
    const policy = policyOf({ trip: consecutiveFailures(3), jitter: 0 });
    const name = `handed-${randomUUID()}`;
    const generation = (await store.record(name, policy, outcomes(0))).snapshot.generation;
    const failing = outcomes(generation, { failures: 1 });
    const measure = async (): Promise<string[]> => {
      commands.length = 0;
      await store.record(name, policy, failing);
      return [...commands];
    };
    // The first outcome in a bucket: the update is refused (no bucket yet), then the write.
    assert.deepEqual(await measure(), ['UpdateItem', 'PutItem']);
    assert.deepEqual(await measure(), ['UpdateItem']);
    // The one that trips it: refused (it would trip the policy), then the count and the open.
    assert.deepEqual(await measure(), ['UpdateItem', 'PutItem']);
    assert.equal((await store.inspect(name, policy))?.state, 'open');
    counting.destroy();
  });

  it('createBreakerTable is idempotent, and the store works on a table it created', async () => {
    const table = `made-${randomUUID().slice(0, 8)}`;
    const first = await createBreakerTable(client, table);
    const second = await createBreakerTable(client, table);
    assert.equal(first.created, true);
    assert.equal(second.created, false);
    // dynalite does not implement UpdateTimeToLive; AWS does, and then this says 'enabled'.
    assert.equal(second.timeToLive, first.timeToLive);
    const factory = new BreakerFactory({
      store: new DynamoDBStore({ client, tableName: table }),
      trip: consecutiveFailures(2),
    });
    const breaker = factory.breakerFor('tenant-1');
    assert.equal(await breaker.execute(() => Promise.resolve(1)), 1);
    for (let i = 0; i < 2; i++)
      await assert.rejects(breaker.execute(() => Promise.reject(new Error('down'))));
    await assert.rejects(
      breaker.execute(() => Promise.resolve(1)),
      (e: unknown) => isCircuitOpenError(e),
    );
    await factory.close();
  });

  it('costs one request per inspect, unchanged acquire, counted failure and success with no run; three for a transition', async () => {
    const counts: Record<string, number> = {};
    const counting = server.client();
    counting.middlewareStack.add(
      (next, context) => async (args) => {
        counts[context.commandName!] = (counts[context.commandName!] ?? 0) + 1;
        return next(args);
      },
      { step: 'initialize' },
    );
    const store = new DynamoDBStore({ client: counting, tableName: TABLE });
    const policy = policyOf({ trip: consecutiveFailures(3) });
    const name = `cost-${randomUUID()}`;
    const measure = async (run: () => Promise<unknown>): Promise<Record<string, number>> => {
      for (const key of Object.keys(counts)) delete counts[key];
      await run();
      return { ...counts };
    };
    assert.deepEqual(await measure(() => store.inspect(name, policy)), { GetItemCommand: 1 });
    // A breaker without an item is admitted under generation 0 and gets no item: one read.
    assert.deepEqual(await measure(() => store.acquire(name, policy)), { GetItemCommand: 1 });
    assert.equal((await store.acquire(name, policy)).generation, 0);
    // Its success carried on the next acquire: one read answers both.
    const carried = { ...outcomes(0, { successes: 1 }), id: `c-${name}` };
    assert.deepEqual(await measure(() => store.recordThenAcquire(name, policy, carried)), {
      GetItemCommand: 1,
    });
    assert.equal(await store.inspect(name, policy), null);
    // The first batch under generation 0 makes it (an empty one here: nothing counted yet).
    const made = await store.record(name, policy, outcomes(0));
    const generation = made.snapshot.generation;
    assert.deepEqual(await measure(() => store.acquire(name, policy)), { GetItemCommand: 1 });
    const batch = {
      generation,
      successes: 1,
      failures: 0,
      trailingFailures: 0,
      slow: 0,
      ignored: 0,
      probes: [],
      random: 0,
    };
    // Under a count policy a success only resets a run: with none, one read and no write.
    assert.deepEqual(await measure(() => store.record(name, policy, batch)), { GetItemCommand: 1 });
    const failing = { ...batch, successes: 0, failures: 1, trailingFailures: 1 };
    // The first outcome in a bucket sets the bucket up: the atomic update's condition fails, then
    // a read and a conditional write. Every later one is one atomic update.
    assert.deepEqual(await measure(() => store.record(name, policy, failing)), {
      UpdateItemCommand: 1,
      GetItemCommand: 1,
      PutItemCommand: 1,
    });
    assert.deepEqual(await measure(() => store.record(name, policy, failing)), { UpdateItemCommand: 1 });
    // A success with a run to reset: a read and the conditional write.
    assert.deepEqual(await measure(() => store.record(name, policy, batch)), {
      GetItemCommand: 1,
      PutItemCommand: 1,
    });
    assert.deepEqual(await measure(() => store.record(name, policy, failing)), { UpdateItemCommand: 1 });
    assert.deepEqual(await measure(() => store.record(name, policy, failing)), { UpdateItemCommand: 1 });
    // The one that trips it: the update's condition refuses it (it would trip the policy), then a
    // read and the conditional write that counts it and opens the breaker at once.
    let opened: Awaited<ReturnType<typeof store.record>> | undefined;
    const cost = await measure(async () => {
      opened = await store.record(name, policy, failing);
    });
    assert.deepEqual(cost, { UpdateItemCommand: 1, GetItemCommand: 1, PutItemCommand: 1 });
    assert.equal(opened?.transition?.to, 'open');
    assert.equal(opened?.snapshot.counts.failures, 5);
    assert.deepEqual(await measure(() => store.acquire(name, policy)), { GetItemCommand: 1 });
    counting.destroy();
  });

  it('a count that would trip the policy is written with its open: another process lands before both, not between', async () => {
    // A's failure trips the policy. Its count is refused by the update's condition and written
    // whole with the open; that write is held back here while B writes. B's batch lands first, so
    // A's write (conditional on the version it read) goes again from a fresh read: order B, A. On
    // code that counted the trip with an update and opened it with a second write, B's batch
    // landed between the two.
    let holding = false;
    const slow = server.client();
    const held = holdBack(slow, (input) => holding && input.Item !== undefined);
    const a = new DynamoDBStore({ client: slow, tableName: TABLE });
    const b = new DynamoDBStore({ client, tableName: TABLE });
    const cases: Array<{ trip: TripPolicy; before: Outcomes; late: Outcomes }> = [
      { trip: consecutiveFailures(3), before: { failures: 2 }, late: { successes: 1, trailingFailures: 0 } },
      { trip: consecutiveFailures(3), before: { failures: 2 }, late: { failures: 1 } },
      {
        trip: failureRate(0.5, { minimumCalls: 4, windowMs: 60_000 }),
        before: { successes: 1, failures: 2, trailingFailures: 2 },
        late: { successes: 1, trailingFailures: 0 },
      },
      { trip: failuresInWindow(3, 60_000), before: { failures: 2 }, late: { ignored: 1 } },
    ];
    for (const [n, { trip, before, late }] of cases.entries()) {
      const name = `pending-${n}-${randomUUID()}`;
      const policy = policyOf({ trip, jitter: 0 });
      const { generation } = await b.acquire(name, policy);
      await b.record(name, policy, { ...outcomes(generation, before), id: `b.1` });
      const g = (await b.acquire(name, policy)).generation;
      holding = true;
      const tripping = a.record(name, policy, { ...outcomes(g, { failures: 1 }), id: 'a.1', idFloor: 1 });
      while (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      const after = await b.record(name, policy, { ...outcomes(g, late), id: 'b.2', idFloor: 2 });
      holding = false;
      held.splice(0).forEach((release) => release());
      const opened = await tripping;
      const expected = inOrder(policy, before, [late, { failures: 1 }]);
      assert.equal(
        summary(policy, await b.inspect(name, policy)),
        expected.state,
        `${n}: B's batch, then A's`,
      );
      assert.deepEqual([after.stale, opened.stale], expected.stale, `${n}: stale as in that order`);
      const transitions = [opened.transition, after.transition].filter((t) => t !== null);
      assert.equal(transitions.length, expected.opened ? 1 : 0, `${n}: the open is reported once`);
    }
    slow.destroy();
  });

  it('three processes racing a trip land in an order of the three, under every policy', async () => {
    // A's failure trips the policy; its write is held back. C's ignored outcome and then B's
    // success land meanwhile (the model check's three-client step found this: with the trip a
    // count and the open a second write, C's count and B's success both landed between them, and
    // B's success under a failure rate brought the rate back below the ratio: the breaker stayed
    // closed, in no order of the three). Any second write of C's is held back too.
    const cases: Array<{ trip: TripPolicy; before: Outcomes }> = [
      { trip: consecutiveFailures(3), before: { failures: 2 } },
      { trip: failuresInWindow(3, 60_000), before: { failures: 2 } },
      {
        trip: failureRate(0.6, { minimumCalls: 4, windowMs: 60_000 }),
        before: { successes: 2, failures: 2, trailingFailures: 2 },
      },
    ];
    const aBatch: Outcomes = { failures: 1 };
    const bBatch: Outcomes = { successes: 1, trailingFailures: 0 };
    const cBatch: Outcomes = { ignored: 1 };
    for (const [n, { trip, before }] of cases.entries()) {
      let holding = false;
      const aClient = server.client();
      const heldA = holdBack(aClient, (input) => holding && input.Item !== undefined);
      const cClient = server.client();
      let cUpdates = 0;
      const heldC = holdBack(
        cClient,
        (input) => holding && input.UpdateExpression !== undefined && ++cUpdates > 1,
      );
      const a = new DynamoDBStore({ client: aClient, tableName: TABLE });
      const b = new DynamoDBStore({ client, tableName: TABLE });
      const c = new DynamoDBStore({ client: cClient, tableName: TABLE });
      const policy = policyOf({ trip, jitter: 0 });
      const name = `three-${n}-${randomUUID()}`;
      const { generation } = await b.acquire(name, policy);
      await b.record(name, policy, { ...outcomes(generation, before), id: 'b.1', idFloor: 1 });
      const g = (await b.acquire(name, policy)).generation;
      holding = true;
      const tripping = a.record(name, policy, { ...outcomes(g, aBatch), id: 'a.1', idFloor: 1 });
      while (heldA.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      const ignoring = c.record(name, policy, { ...outcomes(g, cBatch), id: 'c.1', idFloor: 1 });
      // C's count lands, then it either returns or waits on a second write.
      let ignored = false;
      void ignoring.then(() => (ignored = true));
      while (heldC.length === 0 && !ignored) await new Promise((resolve) => setTimeout(resolve, 5));
      await b.record(name, policy, { ...outcomes(g, bBatch), id: 'b.2', idFloor: 2 });
      holding = false;
      heldC.splice(0).forEach((release) => release());
      await ignoring;
      heldA.splice(0).forEach((release) => release());
      await tripping;
      const seen = summary(policy, await b.inspect(name, policy));
      const orders = [
        [aBatch, bBatch, cBatch],
        [aBatch, cBatch, bBatch],
        [bBatch, aBatch, cBatch],
        [bBatch, cBatch, aBatch],
        [cBatch, aBatch, bBatch],
        [cBatch, bBatch, aBatch],
      ];
      const possible = new Set<string>();
      for (const order of orders) possible.add(inOrder(policy, before, order).state);
      assert.ok(
        possible.has(seen),
        `${n}: ${seen}, which no order of the three gives: ${[...possible].join('; ')}`,
      );
      aClient.destroy();
      cClient.destroy();
    }
  });

  it('a failure-rate count is not let through by a score another policy left behind', async () => {
    // One breaker name under two policies (a misconfiguration): counts under consecutiveFailures
    // do not keep the failure-rate score, so they drop the ratio it was kept for, and the next
    // failure-rate count that trips is refused and written whole (a read and one write), not let
    // through on the stale score (then opened by a second write, which is what the guard prevents).
    const counting = server.client();
    const commands = commandLog(counting);
    const store = new DynamoDBStore({ client: counting, tableName: TABLE });
    const rate = policyOf({ trip: failureRate(0.5, { minimumCalls: 4, windowMs: 60_000 }), jitter: 0 });
    const run = policyOf({ trip: consecutiveFailures(100), jitter: 0 });
    const name = `mixed-${randomUUID()}`;
    const { generation } = await store.acquire(name, rate);
    await store.record(name, rate, outcomes(generation, { successes: 3 }));
    const g = (await store.acquire(name, rate)).generation;
    await store.record(name, rate, outcomes(g, { successes: 1 })); // a count: the score is kept
    await store.record(name, run, outcomes(g, { failures: 3 })); // counts the score does not see
    commands.length = 0;
    const tripped = await store.record(name, rate, outcomes(g, { failures: 1 }));
    assert.equal(tripped.transition?.to, 'open', '4 failures of 8 reach 0.5');
    assert.deepEqual(commands, ['UpdateItem', 'GetItem', 'PutItem']);
    counting.destroy();
  });

  it('a process whose clock lags counts in the newest bucket, as the reducer does', async () => {
    // Near a bucket boundary a process whose clock is a little behind still sees the bucket before
    // the newest in its slot. Its count must go where the reducer puts it (the newest bucket), or
    // the outcome leaves the window a bucket early; the reference is a MemoryStore whose clock
    // steps back for the lagging call.
    const start = 1_700_000_000_000;
    const ahead = new ManualClock(start);
    const behind = new ManualClock(start);
    const a = new DynamoDBStore({ client, tableName: TABLE, clock: ahead });
    const b = new DynamoDBStore({ client, tableName: TABLE, clock: behind });
    const reference = new ManualClock(start);
    const memory = new MemoryStore({ clock: reference });
    const policy = policyOf({ trip: failuresInWindow(100, 10_000), jitter: 0 });
    const name = `lag-${randomUUID()}`;
    const first = (await a.acquire(name, policy)).generation;
    await a.record(name, policy, outcomes(first, { failures: 1 }));
    memory.record(name, policy, outcomes(memory.acquire(name, policy).generation, { failures: 1 }));
    const g = (await a.acquire(name, policy)).generation;
    const m = memory.acquire(name, policy).generation;
    const fail = (store: DynamoDBStore, n: number) =>
      store.record(name, policy, { ...outcomes(g, { failures: 1 }), id: `${n}.1`, idFloor: 1 });
    for (const clock of [ahead, reference]) clock.advance(1_000);
    await fail(a, 1);
    memory.record(name, policy, outcomes(m, { failures: 1 }));
    reference.set(start); // the lagging process's time: the bucket before the newest
    const commands = commandLog(client);
    await fail(b, 2);
    memory.record(name, policy, outcomes(m, { failures: 1 }));
    reference.set(start + 10_000);
    ahead.set(start + 10_000); // the first bucket has left the window, the newest has not
    assert.equal(
      summary(policy, await a.inspect(name, policy)),
      summary(policy, memory.inspect(name, policy)),
    );
    assert.equal((await a.inspect(name, policy))?.counts.failures, 2);
    // (Refused, then written whole by the reducer; on DynamoDB from the item the refusal handed back.)
    assert.deepEqual(commands.slice(0, 3), ['UpdateItem', 'GetItem', 'PutItem']);
  });

  it('counts that trip the policy only because time passed are no open due: the next outcome counts, then trips', async () => {
    // Successes leave the window and the failures left behind trip the rate, with no write: no
    // process saw a trip, so a success arriving now is counted (then trips it), as a reducer would.
    const clock = new ManualClock();
    const store = new DynamoDBStore({ client, tableName: TABLE, clock });
    const policy = policyOf({ trip: failureRate(0.6, { minimumCalls: 4, windowMs: 10_000 }), jitter: 0 });
    const name = `slid-${randomUUID()}`;
    const { generation } = await store.acquire(name, policy);
    await store.record(name, policy, { ...outcomes(generation, { successes: 4 }), id: 'a.1', idFloor: 1 });
    const g = (await store.acquire(name, policy)).generation;
    clock.advance(5_000);
    const failed = await store.record(name, policy, {
      ...outcomes(g, { failures: 4 }),
      id: 'a.2',
      idFloor: 2,
    });
    assert.equal(failed.snapshot.state, 'closed', '4 of 8 is below 0.6');
    clock.advance(5_500);
    const success = await store.record(name, policy, {
      ...outcomes(g, { successes: 1, trailingFailures: 0 }),
      id: 'a.3',
      idFloor: 3,
    });
    assert.equal(success.stale, false);
    assert.equal(success.snapshot.state, 'open');
    assert.deepEqual([success.snapshot.counts.successes, success.snapshot.counts.failures], [1, 4]);
  });
});
