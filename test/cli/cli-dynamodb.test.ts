import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

import { DEFAULT_POLICY } from '../../src/cli/fleet.js';
import type { BreakerRow } from '../../src/cli/fleet.js';
import { DynamoDBStore } from '../../src/stores/dynamodb/index.js';
import { count, runCli, spawnCli, trip, waitForOutput } from '../helpers/cli.js';
import type { Dynalite } from '../helpers/dynalite.js';
import { useDynalite } from '../helpers/dynalite.js';
import { freePort } from '../helpers/redis-server.js';

/** The breakers of `list --json`. */
function listed(stdout: string): BreakerRow[] {
  return (JSON.parse(stdout) as { breakers: BreakerRow[] }).breakers;
}

const TABLE = 'cli-breakers';
// What a user of DynamoDB Local or dynalite sets: any credentials do.
const AWS = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' };

describe('npx circuitry against DynamoDB (dynalite)', { timeout: 60_000 }, () => {
  let server: Dynalite;
  let client: DynamoDBClient;
  let store: DynamoDBStore;
  let flags: string[];
  useDynalite(TABLE, (s, c) => {
    server = s;
    client = c;
  });

  before(async () => {
    store = new DynamoDBStore({ client, tableName: TABLE });
    flags = ['--dynamodb', TABLE, '--endpoint', server.endpoint];
    await trip(store, 'charge-card/tenant-a');
    await count(store, 'charge-card/tenant-b', 1, 1);
  });

  it('list --json and status: state, override, counts and retry-after', async () => {
    const run = await runCli(['list', '--json', ...flags], AWS);
    assert.equal(run.code, 0, run.stderr);
    const rows = listed(run.stdout);
    assert.deepEqual(
      rows.map((r) => [r.name, r.state, r.override, r.counts.failures, r.counts.total]),
      [
        ['charge-card/tenant-a', 'open', null, 5, 5],
        ['charge-card/tenant-b', 'closed', null, 1, 2],
      ],
    );
    assert.ok(rows[0]!.retryAfterMs > 20_000);
    const open = await runCli(['list', '--state', 'open', ...flags], AWS);
    assert.match(open.stdout, /^charge-card\/tenant-a +open /m);
    assert.doesNotMatch(open.stdout, /tenant-b/);
    const status = await runCli(['status', 'charge-card/tenant-b', '--json', ...flags], AWS);
    assert.equal((JSON.parse(status.stdout) as BreakerRow).counts.failureRate, 0.5);
    assert.equal((await runCli(['status', 'nobody', ...flags], AWS)).code, 1);
  });

  it('overrides and reset, from flags or the environment', async () => {
    const env = { ...AWS, CIRCUITRY_DYNAMODB_TABLE: TABLE, CIRCUITRY_DYNAMODB_ENDPOINT: server.endpoint };
    for (const [action, override] of [
      ['open', 'forced-open'],
      ['metrics-only', 'metrics-only'],
      ['disable', 'forced-closed'],
      ['close', 'forced-closed'],
      ['clear', null],
    ] as const) {
      const run = await runCli([action, 'ops/tenant-o', '--json'], env);
      assert.equal(run.code, 0, `${action}: ${run.stderr}`);
      assert.equal((JSON.parse(run.stdout) as { after: BreakerRow }).after.override, override);
      assert.equal((await store.inspect('ops/tenant-o', DEFAULT_POLICY))?.override, override);
    }
    const reset = await runCli(['reset', 'charge-card/tenant-b', '--json'], env);
    assert.equal(reset.code, 0, reset.stderr);
    const result = JSON.parse(reset.stdout) as { before: BreakerRow; after: BreakerRow; kept: boolean };
    assert.equal(result.before.counts.total, 2);
    assert.ok(result.after.generation > result.before.generation);
    assert.equal(result.after.override, null);
    assert.equal(result.after.state, 'closed');
    assert.equal(result.after.counts.total, 0);
    assert.equal(result.after.counts.consecutiveFailures, 0);
    assert.equal(result.kept, false);
    assert.equal((await store.inspect('charge-card/tenant-b', DEFAULT_POLICY))?.counts.total, 0);
    // An open breaker: closed at once, its failures forgotten.
    const opened = await runCli(['reset', 'charge-card/tenant-a', '--json'], env);
    assert.equal(opened.code, 0, opened.stderr);
    const closed = JSON.parse(opened.stdout) as { before: BreakerRow; after: BreakerRow; kept: boolean };
    assert.equal(closed.before.state, 'open');
    assert.equal(closed.after.state, 'closed');
    assert.equal(closed.after.counts.failures, 0);
    assert.equal(closed.after.retryAfterMs, 0);
    const stored = await store.inspect('charge-card/tenant-a', DEFAULT_POLICY);
    assert.equal(stored?.state, 'closed');
    assert.equal(stored?.counts.total, 0);
    assert.equal((await runCli(['reset', 'nobody'], env)).code, 1);
  });

  it('watch reads the table every --interval and prints what changed', async () => {
    const watch = spawnCli(['watch', '--interval', '200', '--match', 'watch/*', ...flags], AWS);
    const exited = new Promise<number | null>((resolve) => watch.on('close', resolve));
    try {
      await waitForOutput(watch.stderr!, /watching DynamoDB table cli-breakers .*read every 200 ms/);
      const line = waitForOutput(watch.stdout!, /watch\/tenant-w {2}closed -> open/);
      await trip(store, 'watch/tenant-w');
      await line;
    } finally {
      watch.kill('SIGINT');
    }
    assert.equal(await exited, 0);
  });

  it('exit 1 within a few seconds when the endpoint is away or the table does not exist', async () => {
    const away = ['--dynamodb', TABLE, '--endpoint', `http://127.0.0.1:${await freePort()}`];
    const runs = await Promise.all([
      runCli(['list', ...away], AWS),
      runCli(['status', 'x', ...away], AWS),
      runCli(['open', 'x', ...away], AWS),
      runCli(['watch', ...away], AWS),
      runCli(['list', '--dynamodb', 'no-such-table', '--endpoint', server.endpoint], AWS),
    ]);
    for (const run of runs) {
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, /DynamoDB table/);
      assert.ok(run.ms < 15_000, `took ${run.ms} ms`);
    }
  });
});
