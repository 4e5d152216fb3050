import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import { PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

import { DynamoDBStore, createBreakerTable } from '../../src/stores/dynamodb/index.js';
import { itemKey } from '../../src/stores/dynamodb/dynamodb-store.js';
import { describeStoreConformance, outcomes, policyOf } from '../../src/testing/conformance.js';
import type { CorruptionKind } from '../../src/testing/conformance.js';
import { ManualClock } from '../../src/testing/manual-clock.js';
import { BreakerFactory, consecutiveFailures, failureRate, isCircuitOpenError } from '../../src/index.js';
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

  it('costs one request per inspect, unchanged acquire, counted failure and success with no run; two for a transition', async () => {
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
    // The one that trips it: the update, then the conditional write that opens it.
    let opened: Awaited<ReturnType<typeof store.record>> | undefined;
    const cost = await measure(async () => {
      opened = await store.record(name, policy, failing);
    });
    assert.deepEqual(cost, { UpdateItemCommand: 1, PutItemCommand: 1 });
    assert.equal(opened?.transition?.to, 'open');
    assert.equal(opened?.snapshot.counts.failures, 5);
    assert.deepEqual(await measure(() => store.acquire(name, policy)), { GetItemCommand: 1 });
    counting.destroy();
  });

  it("a batch another process counts while one's open is due (its second write) comes after the open", async () => {
    // Process A's failure trips the policy with a count; the open is a second write, held back
    // here. Meanwhile process B writes: in the order the store applied them, B's outcome came
    // after A's, which opened the breaker, so it must not count (and a success must not end the
    // run that tripped it, which would leave the breaker closed).
    let holding = false;
    const slow = server.client();
    const held = holdBack(slow, (input) => holding && input.Item !== undefined);
    const a = new DynamoDBStore({ client: slow, tableName: TABLE });
    const b = new DynamoDBStore({ client, tableName: TABLE });
    const cases = [
      { trip: consecutiveFailures(3), before: { failures: 2 }, late: { successes: 1, trailingFailures: 0 } },
      { trip: consecutiveFailures(3), before: { failures: 2 }, late: { failures: 1 } },
      {
        trip: failureRate(0.5, { minimumCalls: 4, windowMs: 60_000 }),
        before: { successes: 1, failures: 2, trailingFailures: 2 },
        late: { successes: 1, trailingFailures: 0 },
      },
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
      assert.equal(after.stale, true, `${n}: B's batch came after the open`);
      const stored = (await b.inspect(name, policy))!;
      assert.equal(stored.state, 'open', `${n}`);
      assert.equal(stored.counts.failures, before.failures + 1, `${n}: A's failure counts, B's batch not`);
      assert.equal(stored.counts.successes, before.successes ?? 0, `${n}`);
      assert.equal(
        stored.counts.consecutiveFailures,
        (before.trailingFailures ?? before.failures) + 1,
        `${n}`,
      );
      const transitions = [opened.transition, after.transition].filter((t) => t !== null);
      assert.equal(transitions.length, 1, `${n}: the open is reported once`);
    }
    slow.destroy();
  });

  it('three processes racing a trip under consecutiveFailures land in an order of the three', async () => {
    // A's failure trips the policy; its open (a second write) is held back. C's ignored outcome
    // and then B's success land meanwhile: each reads the item first (under a count policy they
    // only reset the run), finds the open due and makes it land before applying theirs, so
    // neither ends the run that tripped it. (Under a count policy only failures are counted with
    // the atomic update, and every one after the trip sees the run at or past the threshold: the
    // one-count-back take-back holds with any number of processes. A second write of C's, were
    // there one, is held back too.)
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
    const policy = policyOf({ trip: consecutiveFailures(3), jitter: 0 });
    const name = `three-${randomUUID()}`;
    const { generation } = await b.acquire(name, policy);
    await b.record(name, policy, { ...outcomes(generation, { failures: 2 }), id: 'b.1', idFloor: 1 });
    const g = (await b.acquire(name, policy)).generation;
    holding = true;
    const tripping = a.record(name, policy, { ...outcomes(g, { failures: 1 }), id: 'a.1', idFloor: 1 });
    while (heldA.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const ignoring = c.record(name, policy, { ...outcomes(g, { ignored: 1 }), id: 'c.1', idFloor: 1 });
    // C's count lands, then it either returns or waits on its second write.
    let ignored = false;
    void ignoring.then(() => (ignored = true));
    while (heldC.length === 0 && !ignored) await new Promise((resolve) => setTimeout(resolve, 5));
    await b.record(name, policy, {
      ...outcomes(g, { successes: 1, trailingFailures: 0 }),
      id: 'b.2',
      idFloor: 2,
    });
    holding = false;
    heldC.splice(0).forEach((release) => release());
    await ignoring;
    heldA.splice(0).forEach((release) => release());
    await tripping;
    const stored = (await b.inspect(name, policy))!;
    // In the order A, C, B (or A first in any order) the breaker is open with the run of three;
    // with B's success before A's failure it is closed with a run of one. Nothing else.
    const seen = `${stored.state}, run ${stored.counts.consecutiveFailures}, failures ${stored.counts.failures}`;
    assert.ok(
      (stored.state === 'open' && stored.counts.consecutiveFailures === 3) ||
        (stored.state === 'closed' && stored.counts.consecutiveFailures === 1),
      `the breaker is in a state no order of the three gives: ${seen}`,
    );
    assert.equal(stored.counts.failures, 3, `A's failure is counted once: ${seen}`);
    aClient.destroy();
    cClient.destroy();
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
