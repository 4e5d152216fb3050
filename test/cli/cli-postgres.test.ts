import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { before, describe, it } from 'node:test';

import type pg from 'pg';

import { DEFAULT_POLICY } from '../../src/cli/fleet.js';
import type { BreakerRow } from '../../src/cli/fleet.js';
import { PostgresStore } from '../../src/stores/postgres/index.js';
import { cliEnv, count, root, runCli, spawnCli, trip, waitForOutput } from '../helpers/cli.js';
import { POSTGRES, usePostgresSchema } from '../helpers/postgres.js';
import { freePort } from '../helpers/redis-server.js';

interface Listed {
  store: string;
  prefix: null;
  breakers: BreakerRow[];
  corrupt: { name: string; corrupt: true; reason: string }[];
}

interface Action {
  name: string;
  action: string;
  before: BreakerRow | null;
  after: BreakerRow;
  store: string;
}

/** A module hook (registered after tsx's, so asked first) under which `pg` is not installed. */
const WITHOUT_PG = `data:text/javascript,import { register } from 'node:module'; register(${JSON.stringify(
  `data:text/javascript,export async function resolve(s, c, next) { if (s === 'pg' || s.startsWith('pg/')) throw Object.assign(new Error('Cannot find package ' + s), { code: 'ERR_MODULE_NOT_FOUND' }); return next(s, c); }`,
)});`;

/** The CLI as on a machine without `pg`. */
function runWithoutPg(
  args: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', WITHOUT_PG, 'src/cli/cli.ts', ...args],
    {
      cwd: root,
      env: cliEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

const URL_ = `postgres://${POSTGRES.user}@${POSTGRES.host}:${POSTGRES.port}/${POSTGRES.database}`;

// A closed breaker with counts, an open one, a forced-open one, and a row that does not parse.
const CLOSED = 'charge-card/tenant-b';
const OPEN = 'charge-card/tenant-a';
const FORCED = 'send-email/tenant-f';
const SPOILED = 'spoiled/tenant-s';

describe('npx circuitry against Postgres', { timeout: 120_000 }, () => {
  let pool: pg.Pool;
  let schema: string;
  let table: string;
  let store: PostgresStore;
  let flags: string[];
  usePostgresSchema((s) => {
    pool = s.pool;
    schema = s.schema;
    table = s.table;
  });

  before(async () => {
    store = new PostgresStore({ pool, table });
    flags = ['--postgres', URL_, '--table', table];
    await trip(store, OPEN);
    await count(store, CLOSED, 3, 1);
    await store.force(FORCED, DEFAULT_POLICY, 'forced-open');
    await store.force(SPOILED, DEFAULT_POLICY, 'metrics-only');
    // As a newer schema version (or another writer) would leave it.
    await pool.query(`UPDATE ${table} SET version = 99 WHERE name = $1`, [SPOILED]);
  });

  async function spoiledRow(): Promise<unknown> {
    const { rows } = await pool.query(`SELECT * FROM ${table} WHERE name = $1`, [SPOILED]);
    return rows[0];
  }

  it('list: every breaker, open and forced-open first, the unreadable row reported (text and --json)', async () => {
    const json = await runCli(['list', '--json', ...flags]);
    assert.equal(json.code, 0, json.stderr);
    const listed = JSON.parse(json.stdout) as Listed;
    assert.equal(listed.store, `Postgres table ${table} at ${URL_}`);
    assert.equal(listed.prefix, null);
    assert.deepEqual(
      listed.breakers.map((r) => [
        r.name,
        r.state,
        r.override,
        r.circuitState,
        r.counts.failures,
        r.counts.total,
      ]),
      [
        [OPEN, 'open', null, 'open', 5, 5],
        [FORCED, 'closed', 'forced-open', 'forced-open', 0, 0],
        [CLOSED, 'closed', null, 'closed', 1, 4],
      ],
    );
    assert.ok(listed.breakers[0]!.retryAfterMs > 20_000, `retryAfterMs ${listed.breakers[0]!.retryAfterMs}`);
    assert.equal(listed.breakers[2]!.counts.failureRate, 0.25);
    assert.deepEqual(
      listed.corrupt.map((r) => [r.name, r.corrupt]),
      [[SPOILED, true]],
    );
    assert.match(listed.corrupt[0]!.reason, /schema/);

    const text = await runCli(['list', ...flags]);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout.split('\n')[0], `store: Postgres table ${table} at ${URL_}`);
    assert.match(text.stdout, /^NAME +STATE +OVERRIDE +FAILED\/CALLS +RATE +CONSEC +RETRY-AFTER$/m);
    assert.match(text.stdout, /^charge-card\/tenant-a +open +- +5\/5 +100% +5 +\d+\.\d s$/m);
    assert.match(text.stdout, /^send-email\/tenant-f +closed +forced-open +0\/0 +0% +0 +until cleared$/m);
    assert.match(text.stdout, /^charge-card\/tenant-b +closed +- +1\/4 +25\.0% +0 +-$/m);
    assert.match(text.stdout, /^3 breakers: 2 open, 0 half-open, 1 closed as callers see them/m);
    assert.match(text.stdout, /^1 unreadable record .*\n {2}spoiled\/tenant-s: /m);

    const forced = await runCli(['list', '--json', '--state', 'forced-open', ...flags]);
    assert.deepEqual(
      (JSON.parse(forced.stdout) as Listed).breakers.map((r) => r.name),
      [FORCED],
    );
    const matched = await runCli(['list', '--json', '--match', 'charge-card/*', ...flags]);
    assert.deepEqual(
      (JSON.parse(matched.stdout) as Listed).breakers.map((r) => r.name),
      [OPEN, CLOSED],
    );
  });

  it('status of the closed, the open and the forced breaker; exit 1 for nothing or an unreadable row', async () => {
    for (const [name, state, override, circuit] of [
      [CLOSED, 'closed', null, 'closed'],
      [OPEN, 'open', null, 'open'],
      [FORCED, 'closed', 'forced-open', 'forced-open'],
    ] as const) {
      const json = await runCli(['status', name, '--json', ...flags]);
      assert.equal(json.code, 0, json.stderr);
      const row = JSON.parse(json.stdout) as BreakerRow & { store: string; prefix: null };
      assert.deepEqual(
        [row.name, row.state, row.override, row.circuitState, row.prefix],
        [name, state, override, circuit, null],
      );
      assert.equal(row.store, `Postgres table ${table} at ${URL_}`);
      const text = await runCli(['status', name, ...flags]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^store: Postgres table /);
      assert.match(text.stdout, new RegExp(`^state +${state}`, 'm'));
      assert.match(text.stdout, new RegExp(`^override +${override ?? 'none'}$`, 'm'));
    }
    const missing = await runCli(['status', 'charge-card/nobody', ...flags]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no breaker named "charge-card\/nobody"/);
    assert.match(missing.stdout, /^store: Postgres table /);
    const rowBefore = await spoiledRow();
    const spoiled = await runCli(['status', SPOILED, '--json', ...flags]);
    assert.equal(spoiled.code, 1);
    assert.equal((JSON.parse(spoiled.stdout) as { corrupt: boolean }).corrupt, true);
    assert.match(spoiled.stderr, /not readable; `reset` replaces it/);
    assert.deepEqual(await spoiledRow(), rowBefore, 'a read leaves the row as it is');
    assert.equal((await runCli(['status', ...flags])).code, 2);
  });

  it('open, metrics-only, close, disable, clear: before and after, in the table', async () => {
    const name = 'overrides/tenant-z';
    let previous: string | null = null;
    for (const [action, override] of [
      ['open', 'forced-open'],
      ['metrics-only', 'metrics-only'],
      ['close', 'forced-closed'],
      ['clear', null],
      ['disable', 'forced-closed'],
    ] as const) {
      const run = await runCli([action, name, '--json', ...flags]);
      assert.equal(run.code, 0, `${action}: ${run.stderr}`);
      const result = JSON.parse(run.stdout) as Action;
      assert.equal(result.action, action);
      if (action === 'open') assert.equal(result.before, null, 'no row before');
      else assert.equal(result.before?.override, previous);
      assert.equal(result.after.override, override);
      assert.equal((await store.inspect(name, DEFAULT_POLICY))?.override, override, `${action} is stored`);
      previous = override;
    }
    const text = await runCli(['open', name, ...flags]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /^store: Postgres table .*\noverrides\/tenant-z: open\n {2}before {2}closed, override forced-closed, .*\n {2}after {3}closed, override forced-open, .*retry after until cleared/,
    );
    assert.equal((await runCli(['clear', name, ...flags])).code, 0);
    const missing = await runCli(['clear', 'overrides/nobody', ...flags]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no breaker named/);
    // Forcing an open breaker closed hides its open state; the command says so.
    const hidden = 'overrides/open-one';
    await trip(store, hidden);
    const close = await runCli(['close', hidden, ...flags]);
    assert.equal(close.code, 0, close.stderr);
    assert.match(close.stderr, /warning: overrides\/open-one is open .*circuitry reset overrides\/open-one/);
  });

  it('reset: the open breaker closes with its counts forgotten; the unreadable row is replaced; exit 1 for nothing', async () => {
    const name = 'reset/tenant-r';
    await trip(store, name);
    const run = await runCli(['reset', name, '--json', ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as Action & { kept: boolean };
    assert.equal(result.before?.state, 'open');
    assert.equal(result.after.state, 'closed');
    assert.equal(result.after.counts.total, 0);
    assert.ok(result.after.generation > result.before.generation);
    assert.equal(result.kept, false);
    assert.equal(run.stderr, '');
    assert.equal((await store.acquire(name, DEFAULT_POLICY)).admitted, true);
    const text = await runCli(['reset', CLOSED, ...flags]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /^charge-card\/tenant-b: reset\n {2}before {2}closed, .*\n {2}after {3}closed, /m,
    );
    const spoiled = await runCli(['reset', SPOILED, '--json', ...flags]);
    assert.equal(spoiled.code, 0, spoiled.stderr);
    assert.equal((JSON.parse(spoiled.stdout) as Action).before, null);
    assert.equal((await store.examine(SPOILED, DEFAULT_POLICY)).kind, 'record');
    const missing = await runCli(['reset', 'reset/nobody', ...flags]);
    assert.equal(missing.code, 1);
    assert.equal(await store.inspect('reset/nobody', DEFAULT_POLICY), null, 'no row made');
  });

  it('watch hears transitions pushed by LISTEN/NOTIFY, as text and --json; SIGINT ends it with exit 0', async () => {
    const watch = spawnCli(['watch', '--match', 'watch/*', ...flags]);
    const json = spawnCli(['watch', '--json', '--match', 'watch/*', ...flags]);
    const exited = Promise.all([watch, json].map((c) => new Promise((resolve) => c.on('close', resolve))));
    try {
      await Promise.all([
        waitForOutput(watch.stderr!, /watching Postgres table .* \(pushed\)/),
        waitForOutput(json.stderr!, /watching Postgres table .* \(pushed\)/),
      ]);
      const line = waitForOutput(watch.stdout!, /watch\/tenant-w {2}closed -> open, retry after/);
      const jsonLine = waitForOutput(json.stdout!, /"to":"open"/);
      await store.force('other/tenant', DEFAULT_POLICY, 'forced-open'); // not matched
      await trip(store, 'watch/tenant-w');
      assert.doesNotMatch(await line, /other\/tenant/);
      const message = JSON.parse((await jsonLine).trim().split('\n')[0]!) as { key: string; from: string };
      assert.deepEqual([message.key, message.from], ['watch/tenant-w', 'closed']);
    } finally {
      watch.kill('SIGINT');
      json.kill('SIGINT');
    }
    assert.deepEqual(await exited, [0, 0]);
  });

  it('dashboard serves the fleet read from Postgres', async () => {
    const dashboard = spawnCli(['dashboard', '--port', '0', '--interval', '200', ...flags]);
    const exited = new Promise((resolve) => dashboard.on('close', resolve));
    try {
      const started = await waitForOutput(dashboard.stdout!, /Ctrl-C stops it/);
      assert.match(started, /^circuitry dashboard for Postgres table /m);
      const url = /read-only:\s+(\S+)/.exec(started)![1]!;
      const rows = (await (await fetch(`${url}api/breakers`)).json()) as BreakerRow[];
      const byName = new Map(rows.map((r) => [r.name, r]));
      assert.equal(byName.get(OPEN)?.state, 'open');
      assert.equal(byName.get(CLOSED)?.state, 'closed');
      assert.equal(byName.get(FORCED)?.circuitState, 'forced-open');
      assert.equal(byName.get('watch/tenant-w')?.state, 'open');
      // A change made elsewhere reaches it.
      await store.force('dashboard/tenant-d', DEFAULT_POLICY, 'metrics-only');
      const deadline = Date.now() + 10_000;
      let seen: BreakerRow | undefined;
      while (seen === undefined && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        const now = (await (await fetch(`${url}api/breakers`)).json()) as BreakerRow[];
        seen = now.find((r) => r.name === 'dashboard/tenant-d');
      }
      assert.equal(seen?.override, 'metrics-only');
    } finally {
      dashboard.kill('SIGINT');
    }
    assert.equal(await exited, 0);
  });

  it('reads the store from CIRCUITRY_POSTGRES_URL and CIRCUITRY_POSTGRES_TABLE; a flag wins over the other stores', async () => {
    const env = { CIRCUITRY_POSTGRES_URL: URL_, CIRCUITRY_POSTGRES_TABLE: table };
    const run = await runCli(['status', FORCED, '--json'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((JSON.parse(run.stdout) as BreakerRow).override, 'forced-open');
    const flag = await runCli(['status', FORCED, ...flags], { CIRCUITRY_REDIS_URL: 'redis://127.0.0.1:1' });
    assert.equal(flag.code, 0, flag.stderr);
  });

  it('usage errors are exit 2: two stores (naming both), a bad URL, a table that is not an identifier', async () => {
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [['list', '--postgres', URL_, '--redis', 'redis://127.0.0.1:6379'], {}, /--redis and --postgres/],
      [['open', 'x', '--postgres', URL_, '--dynamodb', 't'], {}, /--dynamodb and --postgres/],
      [
        ['list'],
        { CIRCUITRY_POSTGRES_URL: URL_, CIRCUITRY_REDIS_URL: 'redis://127.0.0.1:6379' },
        /CIRCUITRY_REDIS_URL and CIRCUITRY_POSTGRES_URL/,
      ],
      [['list', '--postgres', 'mysql://127.0.0.1/db'], {}, /--postgres must be a postgres:\/\/ URL/],
      [['list', '--postgres', 'postgres://u:hunter2@[bad/db'], {}, /postgres:\/\/u:\*\*\*@/],
      [['list', '--postgres', URL_, '--table', 'breakers; DROP TABLE x'], {}, /`--table`.*plain identifier/],
      [['list', '--postgres', URL_, '--table', 'a.b.c'], {}, /`--table`/],
      [['list', '--postgres', URL_], { CIRCUITRY_POSTGRES_TABLE: '"quoted"' }, /CIRCUITRY_POSTGRES_TABLE/],
      [
        ['list', '--redis', 'redis://127.0.0.1:6379', '--table', 'breakers'],
        {},
        /--table .*needs --postgres/,
      ],
      [['watch', '--postgres', URL_, '--timeout', '0'], {}, /--timeout/],
    ];
    for (const [args, env, message] of cases) {
      const run = await runCli(args, env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message);
      assert.doesNotMatch(run.stderr, /hunter2/);
      assert.match(run.stderr, /Usage: npx circuitry/);
    }
  });

  it('a wrong table is exit 1 and names the breaker tables there', async () => {
    const missing = await runCli(['list', '--postgres', URL_, '--table', `${schema}.breaker`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, new RegExp(`no table ${schema}\\.breaker in Postgres at `));
    assert.ok(missing.stderr.includes(`breaker tables there: ${table}`), missing.stderr);
    await pool.query(`CREATE TABLE ${schema}.other (id int)`);
    const other = await runCli(['status', 'x', '--json', '--postgres', URL_, '--table', `${schema}.other`]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /other in Postgres at .* is not a circuitry breaker table/);
    assert.equal(other.stdout, '');
  });

  it('an unreachable server or a missing database is exit 1 within seconds, password masked', async () => {
    const refused = await runCli([
      'list',
      '--postgres',
      `postgres://u:hunter2@127.0.0.1:${await freePort()}/db`,
    ]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /cannot reach Postgres at postgres:\/\/u:\*\*\*@127\.0\.0\.1:\d+\/db: .*ECONNREFUSED/,
    );
    assert.doesNotMatch(refused.stderr, /hunter2/);
    const database = await runCli(['list', '--postgres', `${URL_}_no_such_database`]);
    assert.equal(database.code, 1);
    assert.match(database.stderr, /cannot reach Postgres .*does not exist/);
    // A server that takes the connection and never answers.
    const silent: Server = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const away = ['--postgres', `postgres://postgres@127.0.0.1:${port}/db`];
      const runs = await Promise.all([
        runCli(['status', 'x', ...away]),
        runCli(['open', 'x', ...away]),
        runCli(['watch', ...away]),
        runCli(['dashboard', '--port', '0', ...away]),
      ]);
      for (const run of runs) {
        assert.equal(run.code, 1, run.stderr);
        assert.match(run.stderr, /cannot reach Postgres at /);
        assert.ok(run.ms < 10_000, `took ${run.ms} ms`);
      }
    } finally {
      silent.close();
      // The CLI children are gone; their half-open connections with them.
    }
  });

  it('without pg installed: --postgres says to install it (exit 1); the other stores do not need it', async () => {
    const run = await runWithoutPg(['list', ...flags]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /--postgres needs the pg package \(npm install pg\)/);
    const help = await runWithoutPg(['list', '--help']);
    assert.equal(help.code, 0, help.stderr);
    // Usage is checked before any driver is loaded, and Redis never loads pg.
    const usage = await runWithoutPg(['list', '--redis', 'redis://127.0.0.1:6379', '--prefix', '']);
    assert.equal(usage.code, 2, usage.stderr);
    const redis = await runWithoutPg(['list', '--redis', `redis://127.0.0.1:${await freePort()}`]);
    assert.equal(redis.code, 1);
    assert.match(redis.stderr, /cannot reach Redis/);
  });
});
