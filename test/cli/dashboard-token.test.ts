import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { RedisStore } from '../../src/stores/redis/index.js';
import { runCli, spawnCli, trip, waitForOutput } from '../helpers/cli.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

interface Started {
  readonly child: ChildProcess;
  readonly stdout: string;
  readonly stderr: () => string;
  readonly url: string;
}

describe('dashboard token handling', { timeout: 90_000 }, () => {
  let server: RedisServer;
  let client: Redis;
  let prefix: string;
  let work: string;
  const children: ChildProcess[] = [];
  useRedisServer((s, c) => {
    server = s;
    client = c;
  });

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'circuitry-token-'));
    prefix = `token-${randomUUID()}:`;
    await trip(new RedisStore({ client, prefix }), 'charge-card/tenant-a');
  });

  after(async () => {
    for (const child of children) await stop(child);
    rmSync(work, { recursive: true, force: true });
  });

  async function stop(child: ChildProcess): Promise<number | null> {
    if (child.exitCode !== null) return child.exitCode;
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGINT');
    return exited;
  }

  async function start(args: readonly string[], env: Record<string, string> = {}): Promise<Started> {
    const child = spawnCli(
      ['dashboard', '--port', '0', ...args, '--redis', server.url, '--prefix', prefix],
      env,
    );
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const stdout = await waitForOutput(child.stdout!, /Ctrl-C stops it/);
    return { child, stdout, stderr: () => stderr, url: /read-only: +(\S+)/.exec(stdout)![1]! };
  }

  /** The status of an action (`clear`, which needs a record: the breaker was tripped). */
  async function act(url: string, token: string | null): Promise<number> {
    const res = await fetch(new URL('/api/action', url), {
      method: 'POST',
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      body: JSON.stringify({ name: 'charge-card/tenant-a', action: 'clear' }),
    });
    return res.status;
  }

  it('a generated token goes to a file only the user can read; the startup lines say where, not what', async () => {
    const { child, stdout, url } = await start([]);
    const path = /written to (\S+)/.exec(stdout)?.[1];
    assert.ok(path !== undefined, stdout);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const token = readFileSync(path, 'utf8').trim();
    assert.ok(token.length >= 16);
    assert.ok(!stdout.includes(token), 'the token was printed');
    assert.equal(await act(url, null), 401);
    assert.equal(await act(url, `${token}x`), 403);
    assert.equal(await act(url, token), 200);
    assert.equal(await stop(child), 0);
    assert.equal(existsSync(path), false, 'the token file outlived the dashboard');
  });

  it('--token-file and CIRCUITRY_DASHBOARD_TOKEN: the token works and is never printed, no warning', async () => {
    const fromFile = `file-${randomUUID()}`;
    const file = join(work, 'token');
    writeFileSync(file, `${fromFile}\n`, { mode: 0o600 });
    const a = await start(['--token-file', file]);
    assert.ok(!a.stdout.includes(fromFile));
    assert.match(a.stdout, new RegExp(`token: +from ${file.replace(/[.]/g, '\\.')}`));
    assert.equal(await act(a.url, fromFile), 200);
    assert.equal(await stop(a.child), 0);
    assert.doesNotMatch(a.stderr(), /warning/);

    const fromEnv = `env-${randomUUID()}`;
    const b = await start([], { CIRCUITRY_DASHBOARD_TOKEN: fromEnv });
    assert.ok(!b.stdout.includes(fromEnv));
    assert.match(b.stdout, /from CIRCUITRY_DASHBOARD_TOKEN/);
    assert.equal(await act(b.url, fromEnv), 200);
    assert.equal(await stop(b.child), 0);
    assert.doesNotMatch(b.stderr(), /warning/);
  });

  it('--token still works, with a warning about the process list; --print-token prints it', async () => {
    const token = `cli-${randomUUID()}`;
    const { child, stdout, stderr, url } = await start(['--token', token, '--print-token']);
    assert.match(stderr(), /warning: --token .*process list|warning: --token .*\(ps\)/);
    assert.ok(stdout.includes(`#token=${token}`));
    assert.equal(await act(url, token), 200);
    assert.equal(await stop(child), 0);
  });

  it('a token file that cannot be read, or holds too short a token, is exit 2 naming the option', async () => {
    const missing = join(work, 'missing');
    const run = await runCli(['dashboard', '--token-file', missing, '--redis', server.url]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, new RegExp(`--token-file cannot be read: ${missing.replace(/[.]/g, '\\.')}`));
    const short = join(work, 'short');
    writeFileSync(short, 'abc\n');
    const tooShort = await runCli(['dashboard', '--token-file', short, '--redis', server.url]);
    assert.equal(tooShort.code, 2);
    assert.match(tooShort.stderr, /--token-file .* at least 8 characters without spaces, got 3 characters/);
    const both = await runCli([
      'dashboard',
      '--token-file',
      short,
      '--token',
      'abcdefghij',
      '--redis',
      server.url,
    ]);
    assert.equal(both.code, 2);
  });
});
