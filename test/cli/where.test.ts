import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { RedisStore } from '../../src/stores/redis/index.js';
import { runCli, trip } from '../helpers/cli.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

describe('every command says what it read, and hints at a near prefix', { timeout: 60_000 }, () => {
  let server: RedisServer;
  let client: Redis;
  let stem: string;
  useRedisServer((s, c) => {
    server = s;
    client = c;
  });

  before(async () => {
    stem = `where-${randomUUID()}:breakers`;
    await trip(new RedisStore({ client, prefix: `${stem}:` }), 'charge-card/tenant-a');
  });

  it('list and status print the store and prefix (text and --json)', async () => {
    const flags = ['--redis', server.url, '--prefix', `${stem}:`];
    const text = await runCli(['list', ...flags]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout.split('\n')[0]!,
      new RegExp(`^store: Redis at redis://127\\.0\\.0\\.1:\\d+/?, prefix "${stem}:"$`),
    );
    const json = JSON.parse((await runCli(['list', '--json', ...flags])).stdout) as {
      store: string;
      prefix: string;
    };
    assert.match(json.store, /^Redis at redis:/);
    assert.equal(json.prefix, `${stem}:`);
    const status = JSON.parse(
      (await runCli(['status', 'charge-card/tenant-a', '--json', ...flags])).stdout,
    ) as {
      prefix: string;
      state: string;
    };
    assert.equal(status.prefix, `${stem}:`);
    assert.equal(status.state, 'open');
    const action = await runCli(['metrics-only', 'charge-card/tenant-a', ...flags]);
    assert.match(action.stdout, /^store: Redis at /);
  });

  it('a prefix without its trailing separator finds nothing, and says where the breakers are', async () => {
    const flags = ['--redis', server.url, '--prefix', stem];
    const list = await runCli(['list', ...flags]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /0 breakers/);
    assert.ok(
      list.stderr.includes(`hint: nothing under prefix "${stem}", but breakers exist under "${stem}:"`),
      list.stderr,
    );
    const json = JSON.parse((await runCli(['list', '--json', ...flags])).stdout) as {
      nearPrefixes: string[];
    };
    assert.deepEqual(json.nearPrefixes, [`${stem}:`]);
    const status = await runCli(['status', 'charge-card/tenant-a', ...flags]);
    assert.equal(status.code, 1);
    assert.ok(status.stderr.includes(`--prefix ${stem}:`), status.stderr);
  });

  it('status of a name the store holds nothing for names both possibilities', async () => {
    const run = await runCli(['status', 'never-failed', '--redis', server.url, '--prefix', `${stem}:`]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /never failed .* or the name is wrong/);
    assert.doesNotMatch(run.stderr, /hint/);
  });

  it('close on a breaker whose computed state is open warns and names reset; on a closed one it does not', async () => {
    const flags = ['--redis', server.url, '--prefix', `${stem}:`];
    await trip(new RedisStore({ client, prefix: `${stem}:` }), 'close/open-one');
    const open = await runCli(['close', 'close/open-one', ...flags]);
    assert.equal(open.code, 0, open.stderr);
    assert.match(open.stderr, /warning: close\/open-one is open .*`clear`.*circuitry reset close\/open-one/);
    const closed = await runCli(['close', 'close/never-failed', '--json', ...flags]);
    assert.equal(closed.code, 0, closed.stderr);
    assert.equal(closed.stderr, '');
  });
});
