import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { RedisStore } from '../../src/stores/redis/index.js';
import { breakerKey } from '../../src/stores/redis/keys.js';
import { policyOf } from '../../src/testing/conformance.js';
import { runCli, spawnCli, trip, waitForOutput } from '../helpers/cli.js';
import { readRecord } from '../helpers/redis-record.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

/** Names whose keys another application wrote under the same prefix, one Redis type each. */
const FOREIGN = {
  string: 'foreign-string',
  hash: 'foreign-hash',
  list: 'foreign-list',
  set: 'foreign-set',
  zset: 'foreign-zset',
  stream: 'foreign-stream',
  // Carries the marker (v = 1) and the field names of a record, but its generation does not parse.
  almost: 'foreign-almost',
} as const;

interface Fingerprint {
  readonly dump: string | null;
  readonly expireTime: number;
}

async function fingerprint(client: Redis, key: string): Promise<Fingerprint> {
  const dump = await client.dumpBuffer(key);
  const expireTime = Number(await client.call('PEXPIRETIME', key));
  return { dump: dump === null ? null : dump.toString('hex'), expireTime };
}

describe('operator reads never write (Redis)', { timeout: 90_000 }, () => {
  let server: RedisServer;
  let client: Redis;
  let prefix: string;
  let flags: string[];
  const keys: Record<keyof typeof FOREIGN, string> = {} as never;
  const before_: Record<string, Fingerprint> = {};
  useRedisServer((s, c) => {
    server = s;
    client = c;
  });

  before(async () => {
    prefix = `ro-${randomUUID()}:`;
    flags = ['--redis', server.url, '--prefix', prefix];
    for (const [kind, name] of Object.entries(FOREIGN))
      keys[kind as keyof typeof FOREIGN] = breakerKey(prefix, name);
    await client.set(keys.string, 'not yours', 'EX', 3_600);
    await client.hset(keys.hash, 'state', 'open', 'owner', 'someone else');
    await client.rpush(keys.list, 'a', 'b', 'c');
    await client.sadd(keys.set, 'x', 'y');
    await client.zadd(keys.zset, 1, 'one', 2, 'two');
    await client.pexpire(keys.zset, 7_200_000);
    await client.xadd(keys.stream, '*', 'field', 'value');
    // A packed record (its first byte marks it) whose generation never ends.
    const stamp = Math.floor(Date.now() / 1000);
    await client.set(
      keys.almost,
      Buffer.from([0xa0, 0x00, stamp >>> 24, (stamp >>> 16) & 255, (stamp >>> 8) & 255, stamp & 255, 0x80]),
    );
    await client.pexpire(keys.almost, 5_400_000);
    // A breaker of ours beside them, so every command has something to read.
    await trip(new RedisStore({ client, prefix }), 'ours/tenant');
    for (const key of Object.values(keys)) before_[key] = await fingerprint(client, key);
  });

  async function assertUntouched(after: string): Promise<void> {
    for (const [kind, key] of Object.entries(keys)) {
      assert.deepEqual(
        await fingerprint(client, key),
        before_[key],
        `the ${kind} key changed after ${after}`,
      );
    }
  }

  it('list shows only keys with the record marker; the almost-record is reported as unreadable', async () => {
    const run = await runCli(['list', '--json', ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const listed = JSON.parse(run.stdout) as {
      breakers: { name: string }[];
      corrupt: { name: string; corrupt: boolean; reason: string }[];
    };
    assert.deepEqual(
      listed.breakers.map((r) => r.name),
      ['ours/tenant'],
    );
    assert.deepEqual(
      listed.corrupt.map((r) => [r.name, r.corrupt]),
      [[FOREIGN.almost, true]],
    );
    assert.match(listed.corrupt[0]!.reason, /generation/);
    const text = await runCli(['list', ...flags]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /foreign-almost: the generation is malformed/);
    assert.doesNotMatch(text.stdout, /foreign-(string|hash|list|set|zset|stream)/);
    await assertUntouched('list');
  });

  it('status of each foreign key: exit 1, corrupt with the reason, nothing written', async () => {
    const reasons: Record<string, RegExp> = {
      string: /a string that is not a circuitry record/,
      hash: /holds a hash, not a circuitry record/,
      list: /holds a list/,
      set: /holds a set/,
      zset: /holds a zset/,
      stream: /holds a stream/,
      almost: /the generation is malformed/,
    };
    for (const [kind, name] of Object.entries(FOREIGN)) {
      const run = await runCli(['status', name, '--json', ...flags]);
      assert.equal(run.code, 1, `${kind}: ${run.stderr}`);
      const report = JSON.parse(run.stdout) as { name: string; corrupt: boolean; reason: string };
      assert.equal(report.corrupt, true, kind);
      assert.match(report.reason, reasons[kind]!, kind);
      assert.match(run.stderr, /reset/);
    }
    await assertUntouched('status');
  });

  it('watch (briefly) and ten seconds of a running dashboard leave them byte-identical', async () => {
    const watch = spawnCli(['watch', ...flags]);
    await waitForOutput(watch.stderr!, /watching/);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    watch.kill('SIGINT');
    assert.equal(await new Promise((resolve) => watch.on('exit', resolve)), 0);
    await assertUntouched('watch');

    const dashboard = spawnCli(['dashboard', '--port', '0', '--interval', '200', ...flags]);
    try {
      const started = await waitForOutput(dashboard.stdout!, /Ctrl-C stops it/);
      const url = /read-only:\s+(\S+)/.exec(started)![1]!;
      const deadline = Date.now() + 10_000;
      let reads = 0;
      while (Date.now() < deadline) {
        const rows = (await (await fetch(`${url}api/breakers`)).json()) as { name: string }[];
        assert.deepEqual(
          rows.map((r) => r.name),
          ['ours/tenant'],
        );
        reads += 1;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      assert.ok(reads >= 10);
    } finally {
      dashboard.kill('SIGINT');
      await new Promise((resolve) => dashboard.on('exit', resolve));
    }
    await assertUntouched('the dashboard');
  });

  it('an empty prefix is refused (exit 2), from the flag and from the environment', async () => {
    const flag = await runCli(['list', '--redis', server.url, '--prefix', '']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--prefix must not be empty/);
    const env = await runCli(['status', 'x', '--redis', server.url], { CIRCUITRY_PREFIX: '' });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /CIRCUITRY_PREFIX must not be empty/);
    await assertUntouched('the refused commands');
  });

  it('reset NAME is the explicit repair: it replaces an unreadable record', async () => {
    const run = await runCli(['reset', FOREIGN.almost, '--json', ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const record = await readRecord(client, keys.almost, policyOf().bucketMs);
    assert.equal(record?.state, 'closed');
    const status = await runCli(['status', FOREIGN.almost, '--json', ...flags]);
    assert.equal(status.code, 0, status.stderr);
  });
});
