/**
 * DynamoDBStore requests per call, on dynalite started here: every command the SDK client sends is
 * counted by a middleware (as test/dynamodb/conformance.test.ts does).
 */
import type { AddressInfo } from 'node:net';

import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';

import { BreakerFactory } from '../src/index.js';
import type { FactoryOptions } from '../src/index.js';
import { DynamoDBStore, createBreakerTable } from '../src/stores/dynamodb/index.js';
import { failing, noop, quick, results, swallow, targets, yieldToLoop } from './harness.js';

const TARGET = 'DynamoDBStore requests per call';

export async function dynamoDBCase(): Promise<void> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
  } catch (error) {
    targets.push({ case: TARGET, target: 'report', measured: '', verdict: 'skipped', note: String(error) });
    return;
  }
  const { port } = server.address() as AddressInfo;
  const client = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    maxAttempts: 1,
  });
  const counts: Record<string, number> = {};
  client.middlewareStack.add(
    (next, context) => async (args) => {
      counts[context.commandName!] = (counts[context.commandName!] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize' },
  );
  const reset = (): void => {
    for (const key of Object.keys(counts)) delete counts[key];
  };
  const total = (): number => Object.values(counts).reduce((a, b) => a + b, 0);
  const shown = (calls: number): string =>
    Object.entries(counts)
      .map(([command, n]) => `${command.replace(/Command$/, '')} ${(n / calls).toFixed(2)}`)
      .join(', ') || 'none';
  const table = 'circuitry-bench';
  const store = new DynamoDBStore({ client, tableName: table });
  const factory = (options: FactoryOptions = {}): BreakerFactory => new BreakerFactory({ ...options, store });
  const made: BreakerFactory[] = [];
  const c = 'DynamoDBStore requests per call (dynalite)';
  const measured: string[] = [];
  const add = (library: string, calls: number, note = ''): void => {
    const perCall = total() / calls;
    results.push({ case: c, library, value: perCall, unit: 'requests/call', note: `${shown(calls)}${note}` });
    measured.push(`${library}: ${perCall < 0.01 ? perCall.toExponential(1) : perCall.toFixed(2)}`);
  };
  try {
    await createBreakerTable(client, table);
    const calls = quick ? 50 : 200;

    const perCall = factory();
    made.push(perCall);
    const healthy = perCall.breakerFor('healthy');
    for (let i = 0; i < 3; i++) await healthy.execute(noop);
    reset();
    for (let i = 0; i < calls; i++) await healthy.execute(noop);
    add('per call, healthy (successes only)', calls);

    // Failures alternate with successes: consecutiveFailures(5) never trips.
    const flaky = perCall.breakerFor('flaky');
    await flaky.execute(noop);
    let failingRequests = 0;
    let afterRequests = 0;
    for (let i = 0; i < calls; i++) {
      reset();
      await flaky.execute(failing).catch(swallow);
      failingRequests += total();
      reset();
      await flaky.execute(noop);
      afterRequests += total();
    }
    reset();
    await flaky.execute(failing).catch(swallow);
    const failingShape = shown(1);
    results.push({
      case: c,
      library: 'per call, a failing call',
      value: failingRequests / calls,
      unit: 'requests/call',
      note: `the last one: ${failingShape}; its acquire carries the success before it, which resets the run (a read and a write)`,
    });
    results.push({
      case: c,
      library: 'per call, the success after a failure',
      value: afterRequests / calls,
      unit: 'requests/call',
      note: 'its acquire (a read); its reset of the run leaves with the next call (recordThenAcquire)',
    });
    measured.push(
      `per call, a failing call: ${(failingRequests / calls).toFixed(2)}`,
      `the success after it: ${(afterRequests / calls).toFixed(2)}`,
    );

    const localFirst = factory({ maxStalenessMs: 1_000, flushIntervalMs: 200 });
    made.push(localFirst);
    const steady = localFirst.breakerFor('steady');
    await steady.execute(noop);
    reset();
    let localCalls = 0;
    const end = performance.now() + (quick ? 1_000 : 3_000);
    while (performance.now() < end) {
      for (let i = 0; i < 1_000; i++) await steady.execute(noop);
      localCalls += 1_000;
      await yieldToLoop();
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    add(
      'local-first, successes only',
      localCalls,
      `; ${total()} requests over ${localCalls.toLocaleString('en-US')} calls`,
    );
    targets.push({ case: TARGET, target: 'report', measured: measured.join('; '), verdict: 'report' });
  } catch (error) {
    targets.push({ case: TARGET, target: 'report', measured: '', verdict: 'skipped', note: String(error) });
  } finally {
    for (const f of made) await f.close();
    client.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
