import assert from 'node:assert/strict';
import { execFileSync, fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { RedisServer } from './helpers/redis-server.js';

// Packs the real tarball, installs it into a fresh project and imports every subpath from it,
// at run time and through the shipped types, as a user would.
const root = resolve(import.meta.dirname, '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

describe('the packed tarball', { timeout: 180_000 }, () => {
  let work: string;
  let project: string;

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'circuitry-pack-'));
    const out = execFileSync(npm, ['pack', '--json', '--pack-destination', work], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const [packed] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    assert.ok(packed);
    assert.ok(!packed.files.some((f) => f.path.startsWith('src/') || f.path.startsWith('test/')));
    project = join(work, 'app');
    mkdirSync(project);
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'app', private: true, type: 'module' }, null, 2),
    );
    execFileSync(npm, ['install', '--no-audit', '--no-fund', '--offline', join(work, packed.filename)], {
      cwd: project,
      stdio: 'ignore',
    });
    // The optional peer dependencies, as a user who uses those stores would have them.
    mkdirSync(join(project, 'node_modules', '@types'), { recursive: true });
    mkdirSync(join(project, 'node_modules', '@aws-sdk'), { recursive: true });
    symlinkSync(
      join(root, 'node_modules', '@aws-sdk', 'client-dynamodb'),
      join(project, 'node_modules', '@aws-sdk', 'client-dynamodb'),
    );
    symlinkSync(
      join(root, 'node_modules', '@types', 'node'),
      join(project, 'node_modules', '@types', 'node'),
    );
    symlinkSync(join(root, 'node_modules', 'ioredis'), join(project, 'node_modules', 'ioredis'));
    symlinkSync(join(root, 'node_modules', 'bullmq'), join(project, 'node_modules', 'bullmq'));
    symlinkSync(join(root, 'node_modules', 'prom-client'), join(project, 'node_modules', 'prom-client'));
    mkdirSync(join(project, 'node_modules', '@opentelemetry'), { recursive: true });
    symlinkSync(
      join(root, 'node_modules', '@opentelemetry', 'api'),
      join(project, 'node_modules', '@opentelemetry', 'api'),
    );
    symlinkSync(join(root, 'node_modules', 'pg'), join(project, 'node_modules', 'pg'));
    symlinkSync(join(root, 'node_modules', '@types', 'pg'), join(project, 'node_modules', '@types', 'pg'));
    symlinkSync(join(root, 'node_modules', 'undici'), join(project, 'node_modules', 'undici'));
    symlinkSync(join(root, 'node_modules', 'axios'), join(project, 'node_modules', 'axios'));
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  it('ships source maps that carry their sources (the tarball has no src/)', () => {
    const map = JSON.parse(
      readFileSync(join(project, 'node_modules', 'circuitry', 'dist', 'breaker.js.map'), 'utf8'),
    ) as { sources: string[]; sourcesContent?: (string | null)[] };
    assert.equal(map.sourcesContent?.length, map.sources.length);
    assert.ok(map.sourcesContent?.every((text) => typeof text === 'string' && text.length > 0));
  });

  it('imports every subpath at run time', () => {
    const script = `
      const root = await import('circuitry');
      const testing = await import('circuitry/testing');
      const redis = await import('circuitry/redis');
      const dynamodb = await import('circuitry/dynamodb');
      const bullmq = await import('circuitry/bullmq');
      const prometheus = await import('circuitry/prometheus');
      const opentelemetry = await import('circuitry/opentelemetry');
      const postgres = await import('circuitry/postgres');
      const fetchSubpath = await import('circuitry/fetch');
      const undici = await import('circuitry/undici');
      const axios = await import('circuitry/axios');
      const factory = new root.BreakerFactory();
      const value = await factory.breakerFor('x').execute(async () => 42);
      console.log(JSON.stringify({
        value,
        root: typeof root.CircuitBreaker,
        clock: typeof testing.ManualClock,
        conformance: typeof testing.describeStoreConformance,
        redis: typeof redis.RedisStore,
        dynamodb: typeof dynamodb.DynamoDBStore,
        createTable: typeof dynamodb.createBreakerTable,
        withBreaker: typeof bullmq.withBreaker,
        prometheus: typeof prometheus.registerMetrics,
        opentelemetry: typeof opentelemetry.registerMetrics,
        healthHandler: typeof root.healthHandler,
        postgres: typeof postgres.PostgresStore,
        createSchema: typeof postgres.createBreakerSchema,
        breakerFetch: typeof fetchSubpath.breakerFetch,
        circuitryInterceptor: typeof undici.circuitryInterceptor,
        axiosWithBreaker: typeof axios.withBreaker,
      }));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: project,
      encoding: 'utf8',
    });
    assert.deepEqual(JSON.parse(out), {
      value: 42,
      root: 'function',
      clock: 'function',
      conformance: 'function',
      redis: 'function',
      dynamodb: 'function',
      createTable: 'function',
      withBreaker: 'function',
      prometheus: 'function',
      opentelemetry: 'function',
      healthHandler: 'function',
      postgres: 'function',
      createSchema: 'function',
      breakerFetch: 'function',
      circuitryInterceptor: 'function',
      axiosWithBreaker: 'function',
    });
  });

  it('loads the core without the optional drivers installed', () => {
    rmSync(join(project, 'node_modules', 'ioredis'));
    rmSync(join(project, 'node_modules', 'bullmq'));
    rmSync(join(project, 'node_modules', 'pg'));
    rmSync(join(project, 'node_modules', 'undici'));
    rmSync(join(project, 'node_modules', 'axios'));
    const out = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "const m = await import('circuitry'); const f = await import('circuitry/fetch'); const u = await import('circuitry/undici'); console.log(typeof m.MemoryStore, typeof f.breakerFetch, typeof u.circuitryInterceptor)",
      ],
      { cwd: project, encoding: 'utf8' },
    );
    assert.equal(out.trim(), 'function function function', 'fetch needs no driver; undici only its types');
    symlinkSync(join(root, 'node_modules', 'ioredis'), join(project, 'node_modules', 'ioredis'));
    symlinkSync(join(root, 'node_modules', 'bullmq'), join(project, 'node_modules', 'bullmq'));
    symlinkSync(join(root, 'node_modules', 'pg'), join(project, 'node_modules', 'pg'));
    symlinkSync(join(root, 'node_modules', 'undici'), join(project, 'node_modules', 'undici'));
    symlinkSync(join(root, 'node_modules', 'axios'), join(project, 'node_modules', 'axios'));
  });

  it('holds the quorum, escalation, concurrency limit and throttle across fresh processes, and the CLI shows them', async () => {
    // What issues 25 and 27 promise, run from the installed package (dist/, no tsx) by plain
    // node processes on a redis-server of the test's own, and read back with the packaged CLI.
    writeFileSync(join(project, 'worker.mjs'), WORKER);
    const redis = await RedisServer.start();
    const prefix = `pack-${randomUUID()}:`;
    const workers: Worker[] = [];
    const start = (options: object): Worker => {
      const worker = new Worker(project, { url: redis.url, prefix, options });
      workers.push(worker);
      return worker;
    };
    const cli = (...args: string[]): string =>
      execFileSync(
        process.execPath,
        [
          join(project, 'node_modules', '.bin', 'circuitry'),
          ...args,
          '--redis',
          redis.url,
          '--prefix',
          prefix,
        ],
        {
          cwd: project,
          encoding: 'utf8',
        },
      );
    try {
      // Quorum: one sick process of three opens only for itself.
      const quorum = {
        trip: ['consecutiveFailures', 5],
        openMs: 60_000,
        quorum: { minReporters: 2, minFraction: 0.5 },
      };
      const fleet = [start(quorum), start(quorum), start(quorum)];
      await Promise.all(fleet.map((w) => w.ready));
      for (const w of [fleet[1]!, fleet[2]!, fleet[0]!]) await w.run({ name: 'warm', calls: 1 });
      const sick = await fleet[0]!.run({ name: 'api', calls: 10, fail: 1 });
      const well = await Promise.all([fleet[1]!, fleet[2]!].map((w) => w.run({ name: 'api', calls: 20 })));
      assert.deepEqual(sick.reasons, { 'local-open': 5 }, JSON.stringify(sick));
      for (const tally of well) assert.deepEqual(tally, { ran: 20, failed: 0, reasons: {} });
      assert.match(cli('status', 'api'), /state\s+closed/);

      // Escalation: one process sees its tenants' provider down; another's new tenant is refused.
      const escalate = {
        trip: ['consecutiveFailures', 2],
        openMs: 60_000,
        escalate: { maxOpenFraction: 0.5, minBreakers: 4 },
      };
      const [first, second] = [start(escalate), start(escalate)];
      await Promise.all([first.ready, second.ready]);
      for (const tenant of ['t1', 't2', 't3', 't4']) {
        await first.run({ name: 'provider', tenant, calls: 3, fail: 1 });
      }
      let reasons: Record<string, number> = {};
      for (let i = 0; i < 50 && reasons['base-open'] === undefined; i++) {
        reasons = (await second.run({ name: 'provider', tenant: 'never-seen', calls: 1 })).reasons;
        if (reasons['base-open'] === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.deepEqual(reasons, { 'base-open': 1 }, 'a tenant never seen before is refused by the open base');
      assert.match(cli('status', 'provider/*'), /state\s+open/);

      // maxConcurrent: 4 processes x 10 callers, never more than 3 in flight at the server.
      let inFlight = 0;
      let most = 0;
      const server = createServer((_request, response) => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        setTimeout(() => {
          inFlight -= 1;
          response.end('ok');
        }, 5);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      try {
        const limited = { trip: ['consecutiveFailures', 1_000], maxConcurrent: 3, queueMs: 20_000 };
        const pool = [start(limited), start(limited), start(limited), start(limited)];
        await Promise.all(pool.map((w) => w.ready));
        const tallies = await Promise.all(
          pool.map((w) => w.run({ name: 'limited', calls: 10, callers: 10, url })),
        );
        const ran = tallies.reduce((n, t) => n + t.ran, 0);
        assert.equal(ran, 400, JSON.stringify(tallies));
        assert.ok(most <= 3 && most >= 2, `at most 3 in flight at the server: ${most}`);
        assert.match(
          cli('status', 'limited'),
          /slots +0 calls holding a concurrency slot/,
          'every slot was given back',
        );
      } finally {
        server.close();
      }

      // adaptiveThrottle: 60 % failures; the process rejects some calls and the CLI says so.
      const throttled = start({ trip: ['adaptiveThrottle', { windowMs: 60_000, minimumCalls: 10 }] });
      await throttled.ready;
      const tally = await throttled.run({ name: 'throttled', calls: 300, fail: 0.6 });
      assert.ok((tally.reasons.throttled ?? 0) > 0, JSON.stringify(tally));
      assert.match(cli('status', 'throttled'), /throttle\s+rejecting \d+(\.\d)?% of calls/);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
      await redis.stop();
    }
  });

  it('breakerFetch from the tarball obeys a Retry-After and makes no request while open', () => {
    const script = `
      import { createServer } from 'node:http';
      import { BreakerFactory, isCircuitOpenError } from 'circuitry';
      import { breakerFetch } from 'circuitry/fetch';
      let requests = 0;
      const server = createServer((_req, res) => {
        requests += 1;
        res.writeHead(503, { 'retry-after': '2' }).end('busy');
      });
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = 'http://127.0.0.1:' + server.address().port + '/x';
      const fetch = breakerFetch(new BreakerFactory());
      const first = await fetch(url);
      await first.text();
      let rejected;
      try { await fetch(url); } catch (error) { rejected = isCircuitOpenError(error) ? error : undefined; }
      server.close();
      console.log(JSON.stringify({ status: first.status, requests, reason: rejected?.reason, retryAfterMs: rejected?.retryAfterMs }));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: project,
      encoding: 'utf8',
    });
    const got = JSON.parse(out) as { status: number; requests: number; reason: string; retryAfterMs: number };
    assert.equal(got.status, 503, 'the caller gets the response');
    assert.equal(got.requests, 1, 'the second call made no request');
    assert.equal(got.reason, 'forced-open');
    assert.ok(got.retryAfterMs > 1_000 && got.retryAfterMs <= 2_000, JSON.stringify(got));
  });

  it('the packaged demo recovers quietly: jobs deferred once or so, the ramp turning the rest away', () => {
    // Issue 23 as users meet it: `npx circuitry demo` from the installed package, default options
    // (a 3 s recovery ramp). Counts only, no timings: the machine may be busy.
    const out = execFileSync(
      process.execPath,
      [join(project, 'node_modules', '.bin', 'circuitry'), 'demo', '--json'],
      { cwd: project, encoding: 'utf8' },
    );
    const { with: breakers, without } = JSON.parse(out) as Record<
      'with' | 'without',
      { wastedCalls: number; jobsDeferred: number; deferrals: number; rejections: Record<string, number> }
    >;
    assert.ok(breakers.wastedCalls < without.wastedCalls / 5, out);
    assert.ok(breakers.jobsDeferred > 100, out);
    // Each deferred job comes back about once (1.2-1.5 measured), not at every probe (3.7 before).
    assert.ok(breakers.deferrals / breakers.jobsDeferred < 2, out);
    assert.ok((breakers.rejections.recovering ?? 0) > 0, 'the ramp turned some calls away');
  });

  it('type-checks every subpath through the shipped declarations', () => {
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ['node'],
        },
        include: ['check.ts'],
      }),
    );
    writeFileSync(
      join(project, 'check.ts'),
      `
      import { BreakerFactory, isCircuitOpenError, type Snapshot } from 'circuitry';
      import { ManualClock, describeStoreConformance } from 'circuitry/testing';
      import { RedisStore } from 'circuitry/redis';
      import { DynamoDBStore, createBreakerTable } from 'circuitry/dynamodb';
      import { withBreaker, isTooManyDeferralsError } from 'circuitry/bullmq';
      import { Worker } from 'bullmq';
      import { registerMetrics } from 'circuitry/prometheus';
      import { registerMetrics as registerOtel } from 'circuitry/opentelemetry';
      import { Registry } from 'prom-client';
      import { PostgresStore, createBreakerSchema } from 'circuitry/postgres';
      import pg from 'pg';
      import { breakerFetch, isHttpStatusError } from 'circuitry/fetch';
      import { circuitryInterceptor } from 'circuitry/undici';
      import { withBreaker as withAxiosBreaker } from 'circuitry/axios';
      import { Agent } from 'undici';
      import axios from 'axios';
      const pool = new pg.Pool();
      const pgStore = new PostgresStore({ pool, table: 'app.breakers' });
      const created: Promise<{ schema: string; table: string }> = createBreakerSchema(pool, { table: 'app.breakers' });
      const factory = new BreakerFactory<{ tenantId: string }>({ clock: new ManualClock() });
      const breaker = factory.breakerFor('x', { tenantId: 't' });
      const value: Promise<number> = breaker.execute(async (signal: AbortSignal) => (signal.aborted ? 1 : 2));
      const snap: Promise<Snapshot> = breaker.state();
      const worker = new Worker<{ tenantId: string }, number>('q', withBreaker<{ tenantId: string }, number>({
        breaker: (job) => factory.breakerFor('x', { tenantId: job.data.tenantId }),
        process: async (job, signal) => (signal.aborted ? 0 : job.data.tenantId.length),
      }), { connection: {}, autorun: false });
      const registered = registerMetrics(factory, { registry: new Registry(), perBreaker: { max: 5 } });
      const otel = registerOtel(factory);
      const byOrigin = new BreakerFactory();
      const fetchThrough: typeof fetch = breakerFetch(byOrigin, { classify: (r) => (r.status === 404 ? 'failure' : undefined) });
      // @ts-expect-error a factory named by tenant needs a context function
      breakerFetch(factory);
      const perTenant = breakerFetch(factory, { context: (request) => ({ tenantId: request.headers.get('x-tenant') ?? '-' }) });
      const dispatcher = new Agent().compose(circuitryInterceptor(byOrigin));
      const api = withAxiosBreaker(axios.create(), byOrigin, { maxRetryAfterMs: 60_000 });
      export { fetchThrough, perTenant, dispatcher, api, isHttpStatusError, registered, otel, value, snap, worker, isTooManyDeferralsError, isCircuitOpenError, describeStoreConformance, RedisStore, DynamoDBStore, createBreakerTable, pgStore, created };
      `,
    );
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], {
      cwd: project,
      stdio: 'pipe',
    });
  });
});

interface Tally {
  ran: number;
  failed: number;
  reasons: Record<string, number>;
}

/** A plain node process running the installed package (worker.mjs), told what to call over IPC. */
class Worker {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  constructor(cwd: string, config: object) {
    this.child = fork(join(cwd, 'worker.mjs'), [JSON.stringify(config)], {
      cwd,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Plain node, as a user runs it: not the test runner's --import tsx.
      execArgv: [],
    });
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
      this.child.once('message', () => resolve());
    });
  }

  run(load: {
    name: string;
    tenant?: string;
    calls: number;
    callers?: number;
    fail?: number;
    url?: string;
  }): Promise<Tally> {
    return new Promise((resolve) => {
      this.child.once('message', (tally: Tally) => resolve(tally));
      this.child.send(load);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.removeAllListeners('exit');
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ stop: true });
    await exited;
  }
}

/** The worker: imports only what a user's code would, from node_modules. */
const WORKER = `
import { BreakerFactory, adaptiveThrottle, consecutiveFailures, isCircuitOpenError } from 'circuitry';
import { RedisStore } from 'circuitry/redis';
import { Redis } from 'ioredis';

const { url, prefix, options } = JSON.parse(process.argv[2]);
const [trip, arg] = options.trip;
const client = new Redis(url);
const factory = new BreakerFactory({
  ...options,
  store: new RedisStore({ client, prefix }),
  storeTimeoutMs: 5_000,
  trip: trip === 'adaptiveThrottle' ? adaptiveThrottle(arg) : consecutiveFailures(arg),
});
process.on('message', async (m) => {
  if (m.stop) {
    await factory.close();
    client.disconnect();
    process.exit(0);
  }
  const tally = { ran: 0, failed: 0, reasons: {} };
  const breaker = factory.breakerFor(m.name, m.tenant === undefined ? undefined : { tenantId: m.tenant });
  const caller = async () => {
    for (let i = 0; i < m.calls; i++) {
      try {
        await breaker.execute(async () => {
          tally.ran += 1;
          if (m.url !== undefined) await (await fetch(m.url)).text();
          else await new Promise((resolve) => setTimeout(resolve, 1));
          if (Math.random() < (m.fail ?? 0)) throw new Error('down');
        });
      } catch (error) {
        if (isCircuitOpenError(error)) tally.reasons[error.reason] = (tally.reasons[error.reason] ?? 0) + 1;
        else tally.failed += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: m.callers ?? 1 }, caller));
  await breaker.flush();
  process.send(tally);
});
process.send('ready');
`;
