import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import pg from 'pg';

import { BreakerFactory, consecutiveFailures } from '../../src/index.js';
import { PostgresStore, createBreakerSchema, schemaSql } from '../../src/stores/postgres/index.js';
import { keyOf } from '../../src/stores/postgres/names.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import type { StateChangeMessage } from '../../src/store.js';
import { policyFields } from '../../src/stores/policy-fields.js';
import { POSTGRES, usePostgresSchema } from '../helpers/postgres.js';

const policy = policyOf({ trip: consecutiveFailures(3) });

describe('PostgresStore', { timeout: 30_000 }, () => {
  let pool: pg.Pool;
  let schema: string;
  let table: string;
  usePostgresSchema((s) => {
    ({ pool, schema, table } = s);
  });

  it('rejects table names that are not plain identifiers, naming the option', () => {
    for (const bad of ['', 'a.b.c', 'x;drop table y', '"quoted"', '1abc', 'a'.repeat(41), 42]) {
      assert.throws(
        () => new PostgresStore({ pool, table: bad as string }),
        (error: Error & { code?: string }) =>
          error.code === 'INVALID_OPTION' && /`table`/.test(error.message),
        String(bad),
      );
    }
    assert.throws(() => new PostgresStore({ pool: {} as pg.Pool }), /`pool`/);
  });

  it('createBreakerSchema is idempotent when several processes run it at once', async () => {
    const pools = Array.from({ length: 4 }, () => new pg.Pool({ ...POSTGRES, max: 1 }));
    try {
      await Promise.all(pools.map((p) => createBreakerSchema(p, { table: `${schema}.racing` })));
      await Promise.all(pools.map((p) => createBreakerSchema(p, { table: `${schema}.racing` })));
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
    const store = new PostgresStore({ pool, table: `${schema}.racing` });
    assert.equal((await store.acquire('a', policy)).admitted, true);
  });

  it('an unqualified table resolves through search_path, for calls and for LISTEN', async () => {
    const scoped = new pg.Pool({ ...POSTGRES, max: 2, options: `-c search_path=${schema}` });
    try {
      const created = await createBreakerSchema(scoped, { table: 'plain' });
      assert.deepEqual(created, { schema, table: 'plain' });
      const store = new PostgresStore({ pool: scoped, table: 'plain' });
      const heard: StateChangeMessage[] = [];
      const unsubscribe = await store.subscribe((m) => void heard.push(m));
      try {
        const { generation } = await store.acquire('t', policy);
        await store.record('t', policy, outcomes(generation, { failures: 3 }));
        while (heard.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.equal(heard[0]!.key, 't');
      } finally {
        await unsubscribe();
      }
      const { rows } = await pool.query(`SELECT name FROM ${schema}.plain`);
      assert.deepEqual(rows, [{ name: 't' }]);
    } finally {
      await scoped.end();
    }
  });

  it('a name too long for a key is stored under its hash, listed and pushed by its name', async () => {
    const store = new PostgresStore({ pool, table });
    const long = `long:${'ü'.repeat(9_000)}`;
    const heard: StateChangeMessage[] = [];
    const unsubscribe = await store.subscribe((m) => void heard.push(m));
    try {
      const { generation } = await store.acquire(long, policy);
      await store.record(long, policy, outcomes(generation, { failures: 3 }));
      while (heard.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(heard[0]!.key, long);
      assert.deepEqual((await store.list('long:')).keys, [long]);
      assert.deepEqual((await store.list(long.slice(0, 700))).keys, [long]);
      assert.deepEqual((await store.list(`${long.slice(0, 700)}x`)).keys, []);
      // The plain read finds the row under the same key: the open breaker rejects.
      const after = await store.acquire(long, policy);
      assert.equal(after.admitted, false);
      assert.equal(after.reason, 'open');
    } finally {
      await unsubscribe();
    }
  });

  it('the plain read computes the key the functions store, on both sides of 600 code points', async () => {
    const store = new PostgresStore({ pool, table });
    const names = [
      'a'.repeat(600),
      'a'.repeat(601),
      '😀'.repeat(600), // 1,200 UTF-16 units, 600 code points: still the name itself
      '😀'.repeat(601),
      `${'é'.repeat(599)}😀x`,
    ];
    for (const name of names) {
      const { generation } = await store.acquire(name, policy);
      await store.record(name, policy, outcomes(generation, { failures: 3 }));
      const { rows } = await pool.query<{ key: string }>(`SELECT key FROM ${table} WHERE name = $1`, [name]);
      assert.equal(rows[0]?.key, keyOf(name), `key of a name of ${Array.from(name).length} code points`);
      assert.equal((await store.acquire(name, policy)).admitted, false, 'the read found the open row');
    }
  });

  it('the plain read leaves a closed row with spoiled arrays to the next write, which resets and reports it', async () => {
    const corrupt: string[] = [];
    const store = new PostgresStore({ pool, table, onCorruptRecord: (name) => void corrupt.push(name) });
    const { generation } = await store.acquire('spoiled', policy);
    await store.record('spoiled', policy, outcomes(generation, { failures: 1 }));
    await pool.query(`UPDATE ${table} SET buckets = '{1,2,3}' WHERE name = 'spoiled'`);
    const admitted = await store.acquire('spoiled', policy);
    assert.equal(admitted.admitted, true, 'a reset record is closed: the read admits as the function would');
    assert.deepEqual(corrupt, [], 'the read does not check the arrays');
    const result = await store.record('spoiled', policy, outcomes(admitted.generation, { failures: 1 }));
    assert.deepEqual(corrupt, ['spoiled'], 'the write resets the row and reports it');
    assert.equal(result.stale, true, 'admitted under the spoiled row: stale to the reset one');
    const next = await store.acquire('spoiled', policy);
    const counted = await store.record('spoiled', policy, outcomes(next.generation, { failures: 1 }));
    assert.equal(counted.stale, false);
    assert.equal(counted.snapshot.counts.consecutiveFailures, 1);
  });

  it('a tenant that only succeeds gets no row, and no batch id is kept for it', async () => {
    const store = new PostgresStore({ pool, table });
    for (let i = 0; i < 5; i++) {
      const { admitted, generation } = await store.acquire('healthy', policy);
      assert.equal(admitted, true);
      assert.equal(generation, 0, 'admitted without a row (NO_RECORD)');
      await store.record('healthy', policy, { ...outcomes(generation, { successes: 1 }), id: `h${i}` });
    }
    const rows = await pool.query(`SELECT 1 FROM ${table} WHERE name = 'healthy'`);
    assert.equal(rows.rowCount, 0);
    const ids = await pool.query(`SELECT 1 FROM ${table}_batches WHERE id LIKE 'h%'`);
    assert.equal(ids.rowCount, 0);
    // Its first failure makes the row, counting outcomes admitted under 0.
    const failed = await store.record('healthy', policy, outcomes(0, { failures: 1 }));
    assert.equal(failed.stale, false);
    assert.equal(failed.snapshot.counts.failures, 1);
    assert.equal(failed.snapshot.generation % 100, 0, 'a new row starts at a multiple of 100');
  });

  it('a healthy tenant costs one statement per call: the acquire carries the success before it', async () => {
    const store = new PostgresStore({ pool, table });
    let statements = 0;
    const counted = new Proxy(pool, {
      get(target, key, receiver) {
        if (key !== 'query') return Reflect.get(target, key, receiver) as unknown;
        return (...args: Parameters<pg.Pool['query']>) => {
          statements += 1;
          return (target.query as (...a: unknown[]) => unknown)(...args);
        };
      },
    });
    const factory = new BreakerFactory({ store: new PostgresStore({ pool: counted, table }) });
    const breaker = factory.breakerFor('steady');
    await breaker.execute(async () => 'warm');
    await breaker.flush();
    statements = 0;
    for (let i = 0; i < 50; i++) await breaker.execute(async () => 'ok');
    await breaker.flush();
    // 50 acquires (49 carrying the success before them) and the last success at the flush.
    assert.equal(statements, 51);
    assert.equal(await store.inspect('steady', policy), null, 'still no row');
    await factory.close();
  });

  it('transitions never land on a multiple of 100 (those mean: not changed since made)', async () => {
    const store = new PostgresStore({ pool, table });
    const made = await store.record('gen', policy, outcomes(0, { failures: 1 }));
    const base = made.snapshot.generation;
    // The row as if it had changed state 99 times: the next change skips the multiple of 100.
    await pool.query(`UPDATE ${table} SET generation = $1 WHERE name = 'gen'`, [base + 99]);
    const forced = await store.force('gen', policy, 'forced-open');
    assert.equal(forced.snapshot.generation, base + 101);
    const cleared = await store.force('gen', policy, null);
    assert.equal(cleared.snapshot.generation, base + 102);
    // An outcome admitted under 0 no longer counts: the row changed state since it was made.
    const late = await store.record('gen', policy, outcomes(0, { failures: 1 }));
    assert.equal(late.stale, true);
  });

  it('expired rows and batch ids are deleted by an occasional bounded pass, not read meanwhile', async () => {
    let offset = 0;
    const store = new PostgresStore({ pool, table, gcEvery: 1, timeOffsetMs: () => offset });
    const { generation } = await store.acquire('gc:old', policy);
    await store.record('gc:old', policy, { ...outcomes(generation, { failures: 1 }), id: 'b1' });
    const forced = 'gc:forced';
    await store.force(forced, policy, 'forced-open');
    offset += 24 * 3_600_000;
    assert.equal(await store.inspect('gc:old', policy), null, 'an expired row reads as nothing');
    assert.deepEqual((await store.list('gc:')).keys, [forced]);
    // A write runs the pass (an acquire of a breaker without a row writes nothing, and makes none).
    const made = await store.acquire('gc:new', policy);
    await store.record('gc:new', policy, outcomes(made.generation, { failures: 1 }));
    const { rows } = await pool.query<{ name: string }>(
      `SELECT name FROM ${table} WHERE name LIKE 'gc:%' ORDER BY name`,
    );
    assert.deepEqual(
      rows.map((r) => r.name),
      [forced, 'gc:new'],
      'a row with an override never expires',
    );
    const batches = await pool.query(`SELECT * FROM ${table}_batches WHERE id = 'b1'`);
    assert.equal(batches.rowCount, 0);
  });

  it('reset on a schema made before it existed says how to add it; createBreakerSchema again does', async () => {
    const older = `${schema}.older`;
    await createBreakerSchema(pool, { table: older });
    await pool.query(`DROP FUNCTION ${schema}.older_reset`);
    const store = new PostgresStore({ pool, table: older });
    const { generation } = await store.acquire('t', policy);
    await store.record('t', policy, outcomes(generation, { failures: 3 }));
    await assert.rejects(
      store.reset('t', policy),
      (error: Error & { code?: string }) =>
        error.code === 'STORE_ERROR' && /run createBreakerSchema\(\) again/.test(error.message),
    );
    await createBreakerSchema(pool, { table: older });
    const reset = await store.reset('t', policy);
    assert.equal(reset.snapshot.state, 'closed');
    assert.equal(reset.transition?.from, 'open');
  });

  it('createBreakerSchema upgrades a schema made before concurrency limits: rows kept, slots work', async () => {
    // The SQL 0.1 created, before the slot columns (docs/postgres.md of that version).
    const before = readFileSync(new URL('./fixtures/schema-0.1-before-slots.sql', import.meta.url), 'utf8')
      .replaceAll('"public"', `"${schema}"`)
      .replaceAll("'public'", `'${schema}'`)
      .replaceAll('circuitry_breakers', 'before_slots');
    await pool.query(before);
    const old = `${schema}.before_slots`;
    // A breaker with a run of failures, written by the old functions (their policy had 13 fields).
    const p = policyFields(policy)[1].slice(0, 13);
    await pool.query(
      `SELECT * FROM ${old}_record('t', 'consecutive-failures', $1, 0, false, 0, 0, 2, 2, 0, 0, false, 0, 0, NULL, '{}', '{}')`,
      [p],
    );
    await createBreakerSchema(pool, { table: old });
    const store = new PostgresStore({ pool, table: old });
    const kept = await store.inspect('t', policy);
    assert.equal(kept?.counts.consecutiveFailures, 2);
    assert.equal(kept?.activeSlots, 0);
    const limited = policyOf({ trip: consecutiveFailures(3), maxConcurrent: 1 });
    const held = await store.acquire('t', limited);
    assert.equal(held.admitted, true);
    assert.equal(typeof held.slot, 'string');
    assert.equal((await store.acquire('t', limited)).reason, 'concurrency-limit');
    const freed = await store.record('t', limited, {
      ...outcomes(held.generation, { successes: 1 }),
      slots: [held.slot!],
    });
    assert.equal(freed.snapshot.activeSlots, 0);
    assert.equal(freed.snapshot.counts.consecutiveFailures, 0);
    // One function per operation: the old record (without slots_) was dropped, not overloaded.
    const { rows } = await pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_proc WHERE pronamespace = $1::regnamespace AND proname = 'before_slots_record'`,
      [schema],
    );
    assert.equal(rows[0]?.n, '1');
  });

  it('docs/postgres.md prints the schema this version creates (npm run build:docs)', () => {
    const doc = readFileSync(new URL('../../docs/postgres.md', import.meta.url), 'utf8');
    const block = /<!-- schema:start -->\n```sql\n([\s\S]*?)```\n<!-- schema:end -->/.exec(doc);
    assert.ok(block, 'the schema block');
    assert.equal(block[1], schemaSql({ schema: 'public', table: 'circuitry_breakers' }));
  });
});
