import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';

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
