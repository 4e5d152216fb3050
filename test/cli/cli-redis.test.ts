import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { DEFAULT_POLICY } from '../../src/cli/fleet.js';
import type { BreakerRow } from '../../src/cli/fleet.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { breakerKey } from '../../src/stores/redis/keys.js';
import { count, runCli, spawnCli, trip, waitForOutput } from '../helpers/cli.js';
import { RedisServer, freePort, useRedisServer } from '../helpers/redis-server.js';

/** The breakers of `list --json`. */
function listed(stdout: string): BreakerRow[] {
  return (JSON.parse(stdout) as { breakers: BreakerRow[] }).breakers;
}

const COMMANDS = [
  'list',
  'status',
  'open',
  'close',
  'disable',
  'metrics-only',
  'clear',
  'reset',
  'watch',
  'dashboard',
];

function assertRowShape(row: BreakerRow): void {
  assert.deepEqual(Object.keys(row).sort(), [
    'activeProbes',
    'activeSlots',
    'circuitState',
    'counts',
    'generation',
    'name',
    'openUntil',
    'override',
    'overrideReason',
    'overrideUntil',
    'readAt',
    'reopens',
    'retryAfterMs',
    'state',
    'throttle',
  ]);
  assert.equal(typeof row.activeSlots, 'number');
  assert.ok(row.throttle === null || typeof row.throttle.rate === 'number');
  assert.ok(['closed', 'open', 'half-open'].includes(row.state));
  assert.ok(row.override === null || typeof row.override === 'string');
  assert.equal(typeof row.retryAfterMs, 'number');
  assert.deepEqual(Object.keys(row.counts).sort(), [
    'consecutiveFailures',
    'failureRate',
    'failures',
    'ignored',
    'slow',
    'successes',
    'total',
  ]);
}

describe('npx circuitry against Redis', { timeout: 240_000 }, () => {
  let server: RedisServer;
  let client: Redis;
  let prefix: string;
  let store: RedisStore;
  let flags: string[];
  useRedisServer((s, c) => {
    server = s;
    client = c;
  });

  before(async () => {
    prefix = `cli-${randomUUID()}:`;
    store = new RedisStore({ client, prefix });
    flags = ['--redis', server.url, '--prefix', prefix];
    await trip(store, 'charge-card/tenant-a');
    await count(store, 'charge-card/tenant-b', 3, 1);
    await store.force('send-email/tenant-a', DEFAULT_POLICY, 'metrics-only');
  });

  it('--help on every command: exit 0, its usage, and the default policy', async () => {
    const runs = await Promise.all(COMMANDS.map((c) => runCli([c, '--help'])));
    runs.forEach((run, i) => {
      assert.equal(run.code, 0, `${COMMANDS[i]} --help: ${run.stderr}`);
      assert.match(run.stdout, new RegExp(`Usage: npx circuitry ${COMMANDS[i]}`));
      assert.match(run.stdout, /resolveOptions\(\{\}\)\.policy/);
    });
    const top = await runCli(['--help']);
    assert.equal(top.code, 0);
    for (const c of [...COMMANDS, 'demo', 'flaky-server'])
      assert.match(top.stdout, new RegExp(`^  ${c} `, 'm'));
  });

  it('list --json: every breaker with state, override, counts and retry-after, open first', async () => {
    const run = await runCli(['list', '--json', ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const rows = listed(run.stdout);
    rows.forEach(assertRowShape);
    assert.deepEqual(
      rows.map((r) => r.name),
      ['charge-card/tenant-a', 'charge-card/tenant-b', 'send-email/tenant-a'],
    );
    const [a, b, email] = rows as [BreakerRow, BreakerRow, BreakerRow];
    assert.equal(a.state, 'open');
    assert.equal(a.override, null);
    assert.equal(a.counts.consecutiveFailures, 5);
    assert.ok(a.retryAfterMs > 20_000 && a.retryAfterMs <= 33_000, `retryAfterMs ${a.retryAfterMs}`);
    assert.deepEqual(
      {
        state: b.state,
        successes: b.counts.successes,
        failures: b.counts.failures,
        rate: b.counts.failureRate,
      },
      { state: 'closed', successes: 3, failures: 1, rate: 0.25 },
    );
    assert.equal(b.retryAfterMs, 0);
    assert.equal(email.override, 'metrics-only');
  });

  it('list filters by --state and --match, and prints a table without --json', async () => {
    const open = await runCli(['list', '--json', '--state', 'open', ...flags]);
    assert.deepEqual(
      listed(open.stdout).map((r) => r.name),
      ['charge-card/tenant-a'],
    );
    const metrics = await runCli(['list', '--json', '--state', 'metrics-only', ...flags]);
    assert.deepEqual(
      listed(metrics.stdout).map((r) => r.name),
      ['send-email/tenant-a'],
    );
    const match = await runCli(['list', '--json', '--match', '*/tenant-a', ...flags]);
    assert.deepEqual(
      listed(match.stdout).map((r) => r.name),
      ['charge-card/tenant-a', 'send-email/tenant-a'],
    );
    const text = await runCli(['list', '--match', 'charge-card/*', ...flags]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^NAME +STATE +OVERRIDE +FAILED\/CALLS +RATE +CONSEC +RETRY-AFTER$/m);
    assert.match(text.stdout, /^charge-card\/tenant-a +open +- +5\/5 +100% +5 +\d+\.\d s$/m);
    assert.match(text.stdout, /^charge-card\/tenant-b +closed +- +1\/4 +25\.0% +0 +-$/m);
    assert.match(
      text.stdout,
      /^2 breakers: 1 open, 0 half-open, 1 closed as callers see them; 0 with an override$/m,
    );
    const bad = await runCli(['list', '--state', 'sideways', ...flags]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--state must be one of/);
  });

  it('status NAME: one breaker, exit 1 when the store holds nothing for it, 2 without a name', async () => {
    const run = await runCli(['status', 'charge-card/tenant-a', '--json', ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const {
      store: where,
      prefix: shownPrefix,
      ...row
    } = JSON.parse(run.stdout) as BreakerRow & {
      store: string;
      prefix: string;
    };
    assertRowShape(row);
    assert.equal(row.state, 'open');
    assert.match(where, /^Redis at redis:/);
    assert.equal(shownPrefix, prefix);
    const text = await runCli(['status', 'charge-card/tenant-a', ...flags]);
    assert.match(text.stdout, /^state +open$/m);
    assert.match(text.stdout, /^override +none$/m);
    assert.match(text.stdout, /^retry after +\d+\.\d s$/m);
    const missing = await runCli(['status', 'charge-card/nobody', ...flags]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no breaker named "charge-card\/nobody"/);
    assert.match(missing.stdout, /^store: Redis at /);
    assert.equal((await runCli(['status', ...flags])).code, 2);
    assert.equal((await runCli(['status', 'a', 'b', ...flags])).code, 2);
    assert.equal((await runCli(['status', 'a', '--bogus', ...flags])).code, 2);
  });

  it('open, close, disable, metrics-only, clear: set the override and print before and after', async () => {
    const name = 'overrides/tenant-z';
    const steps: Array<[string, string | null]> = [
      ['open', 'forced-open'],
      ['metrics-only', 'metrics-only'],
      ['close', 'forced-closed'],
      ['clear', null],
      ['disable', 'forced-closed'],
    ];
    let previous: string | null = null;
    let first = true;
    for (const [action, override] of steps) {
      const run = await runCli([action, name, '--json', ...flags]);
      assert.equal(run.code, 0, `${action}: ${run.stderr}`);
      const result = JSON.parse(run.stdout) as {
        name: string;
        action: string;
        before: BreakerRow | null;
        after: BreakerRow;
      };
      assert.equal(result.name, name);
      assert.equal(result.action, action);
      if (first) assert.equal(result.before, null, 'a breaker that never failed has no record');
      else assert.equal(result.before?.override, previous);
      assertRowShape(result.after);
      assert.equal(result.after.override, override);
      assert.equal(
        (await store.inspect(name, DEFAULT_POLICY))?.override,
        override,
        `${action} is in the store`,
      );
      previous = override;
      first = false;
    }
    const text = await runCli(['open', name, ...flags]);
    assert.equal(text.code, 0);
    assert.match(
      text.stdout,
      /^overrides\/tenant-z: open\n {2}before {2}closed, override forced-closed, .*\n {2}after {3}closed, override forced-open, .*retry after until cleared/m,
    );
    assert.equal((await runCli(['clear', name, ...flags])).code, 0);
    const missing = await runCli(['clear', 'overrides/nobody', ...flags]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no breaker named/);
  });

  it('open --for DURATION --reason: a timed override, shown with its time left and reason, that lapses to half-open', async () => {
    const name = 'timed/tenant-t';
    const opened = await runCli([
      'open',
      name,
      '--for',
      '3s',
      '--reason',
      'vendor maintenance',
      '--json',
      ...flags,
    ]);
    assert.equal(opened.code, 0, opened.stderr);
    const after = (JSON.parse(opened.stdout) as { after: BreakerRow }).after;
    assert.equal(after.override, 'forced-open');
    assert.equal(after.overrideReason, 'vendor maintenance');
    assert.ok(after.overrideUntil - after.readAt > 2_000 && after.overrideUntil - after.readAt <= 3_000);
    const openedAt = Date.now();
    // What is left depends on how long the CLI took to start (a busy machine: a second or more).
    const status = await runCli(['status', name, ...flags]);
    assert.match(
      status.stdout,
      /override {7}forced-open for (?:\d(?:\.\d)? s|\d{1,3} ms) more \(vendor maintenance\)/,
    );
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, openedAt + 3_300 - Date.now())));
    const lapsed = await runCli(['status', name, '--json', ...flags]);
    const row = JSON.parse(lapsed.stdout) as BreakerRow;
    assert.equal(row.override, null, 'lapsed');
    assert.equal(row.circuitState, 'half-open', 'probes decide, as after any open');
    // clear has nothing to time; a malformed duration is a usage error.
    assert.equal((await runCli(['clear', name, '--for', '5s', ...flags])).code, 2);
    const bad = await runCli(['open', name, '--for', 'soon', ...flags]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--for: expected a duration such as 500ms, 30s, 5m or 2h/);
  });

  it('reset: counts forgotten and closed, at a new generation, with the override kept', async () => {
    const name = 'reset/tenant-r';
    await count(store, name, 2, 2);
    await store.force(name, DEFAULT_POLICY, 'metrics-only');
    const run = await runCli(['reset', name, '--json', ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { before: BreakerRow; after: BreakerRow; kept: boolean };
    assertRowShape(result.after);
    assert.equal(result.before.counts.failures, 2);
    assert.ok(result.after.generation > result.before.generation);
    assert.equal(result.after.override, 'metrics-only');
    assert.equal(result.after.state, 'closed');
    assert.equal(result.after.counts.total, 0);
    assert.equal(result.after.counts.failures, 0);
    assert.equal(result.after.counts.consecutiveFailures, 0);
    assert.equal(result.kept, false);
    assert.equal(run.stderr, '', 'no note: the store forgot everything');
    const stored = await store.inspect(name, DEFAULT_POLICY);
    assert.equal(stored?.counts.total, 0);
    assert.equal(stored?.generation, result.after.generation);
    assert.equal((await runCli(['reset', 'reset/nobody', ...flags])).code, 1);
    assert.equal(await store.inspect('reset/nobody', DEFAULT_POLICY), null, 'no record made');
  });

  it('reset of an open breaker closes it at once, and watchers hear open -> closed', async () => {
    const name = 'reset/tenant-open';
    await trip(store, name);
    assert.equal((await store.inspect(name, DEFAULT_POLICY))?.state, 'open');
    const watch = spawnCli(['watch', '--match', 'reset/*', ...flags]);
    const exited = new Promise<number | null>((resolve) => watch.on('close', resolve));
    try {
      await waitForOutput(watch.stderr!, /watching Redis at .* \(pushed\)/);
      const heard = waitForOutput(watch.stdout!, /reset\/tenant-open {2}open -> closed/);
      const run = await runCli(['reset', name, ...flags]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^reset\/tenant-open: reset\n {2}before {2}open, .*\n {2}after {3}closed, /m);
      await heard;
    } finally {
      watch.kill('SIGINT');
    }
    assert.equal(await exited, 0);
    const stored = await store.inspect(name, DEFAULT_POLICY);
    assert.equal(stored?.state, 'closed');
    assert.equal(stored?.counts.failures, 0);
    assert.equal(stored?.retryAfterMs, 0);
    assert.equal((await store.acquire(name, DEFAULT_POLICY)).admitted, true);
  });

  it('watch: one line per transition as it happens; SIGINT ends it with exit 0', async () => {
    const watch = spawnCli(['watch', '--match', 'watch/*', ...flags]);
    const exited = new Promise<number | null>((resolve) => watch.on('close', resolve));
    const json = spawnCli(['watch', '--json', ...flags]);
    const jsonExited = new Promise<number | null>((resolve) => json.on('close', resolve));
    try {
      await Promise.all([
        waitForOutput(watch.stderr!, /watching Redis at .* \(pushed\)/),
        waitForOutput(json.stderr!, /watching/),
      ]);
      const lines = waitForOutput(watch.stdout!, /watch\/tenant-w {2}closed -> open, retry after/);
      const jsonLine = waitForOutput(json.stdout!, /"to":"open"/);
      await store.force('other/tenant', DEFAULT_POLICY, 'forced-open'); // not matched
      await trip(store, 'watch/tenant-w');
      const text = await lines;
      assert.match(
        text,
        /^\d{4}-\d\d-\d\dT[\d:.]+Z {2}watch\/tenant-w {2}closed -> open, retry after \d+\.\d s, override none, generation \d+$/m,
      );
      assert.doesNotMatch(text, /other\/tenant/);
      const message = JSON.parse(
        (await jsonLine)
          .trim()
          .split('\n')
          .find((l) => l.includes('"to":"open"'))!,
      );
      assert.equal(message.key, 'watch/tenant-w');
      assert.equal(message.from, 'closed');
    } finally {
      watch.kill('SIGINT');
      json.kill('SIGINT');
    }
    assert.equal(await exited, 0);
    assert.equal(await jsonExited, 0);
  });

  it('reads its store from the environment', async () => {
    const run = await runCli(['status', 'charge-card/tenant-b', '--json'], {
      CIRCUITRY_REDIS_URL: server.url,
      CIRCUITRY_PREFIX: prefix,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal((JSON.parse(run.stdout) as BreakerRow).name, 'charge-card/tenant-b');
    // A store flag wins over the other store's variable.
    const flag = await runCli(['status', 'charge-card/tenant-b', ...flags], {
      CIRCUITRY_DYNAMODB_TABLE: 'breakers',
    });
    assert.equal(flag.code, 0, flag.stderr);
  });

  it('usage errors are exit 2: no store, two stores, unknown command, bad flags', async () => {
    for (const args of [
      ['list'],
      ['list', '--redis', server.url, '--dynamodb', 'table'],
      ['list', '--redis', 'http://nope'],
      ['list', '--redis', server.url, '--timeout', '-1'],
      ['frobnicate'],
      ['open', '--redis', server.url],
      ['dashboard', '--port', 'x', '--redis', server.url],
    ]) {
      const run = await runCli(args);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.notEqual(run.stderr, '');
    }
  });

  it('an unreachable store is exit 1 within a few seconds: nothing listening, or a server that answers nothing', async () => {
    const nobody = `redis://127.0.0.1:${await freePort()}`;
    const refused = await runCli(['list', '--redis', nobody]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /cannot reach Redis/);
    const paused = await RedisServer.start();
    paused.pause();
    try {
      const runs = await Promise.all([
        runCli(['list', '--redis', paused.url]),
        runCli(['status', 'x', '--redis', paused.url]),
        runCli(['open', 'x', '--redis', paused.url]),
        runCli(['watch', '--redis', paused.url]),
      ]);
      for (const run of runs) {
        assert.equal(run.code, 1, run.stderr);
        assert.match(run.stderr, /cannot reach Redis .*no answer within/);
        assert.ok(run.ms < 10_000, `took ${run.ms} ms`);
      }
    } finally {
      await paused.stop();
    }
  });

  it('list reads 100,000 breakers (paged, inspected in parallel)', async () => {
    const big = `big-${randomUUID()}:`;
    const bigStore = new RedisStore({ client, prefix: big });
    await bigStore.force('seed', DEFAULT_POLICY, 'metrics-only');
    // Copies of one record, written fast; the CLI reads each through the store's own inspect.
    const dump = await client.dumpBuffer(breakerKey(big, 'seed'));
    for (let i = 0; i < 100_000; i += 5_000) {
      const pipeline = client.pipeline();
      for (let j = i; j < i + 5_000; j++)
        pipeline.restore(breakerKey(big, `tenant/${j}`), 0, dump, 'REPLACE');
      await pipeline.exec();
    }
    const run = await runCli(
      ['list', '--redis', server.url, '--prefix', big, '--match', 'tenant/*', '--json'],
      {},
      50_000,
    );
    assert.equal(run.code, 0, run.stderr);
    const rows = listed(run.stdout);
    assert.equal(rows.length, 100_000);
    assert.equal(new Set(rows.map((r) => r.name)).size, 100_000);
    // How long it took is for the bench, not a test: a busy machine makes any bound flaky.
    console.log(`# list of 100,000 breakers: ${run.ms} ms`);
    await client.flushdb();
  });
});
