import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';

import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';

const run = promisify(execFile);

/** A port nothing listens on now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

async function until(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
  gone: () => void = () => {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    gone();
    const done = await check().catch((error: unknown) => {
      if (error instanceof NotOurServer) throw error;
      return false;
    });
    if (done) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The server on a port is another process's, or ours exited at start (its port was taken). */
class NotOurServer extends Error {}

/**
 * Whether the server on `port` answers and is process `pid`: a port found free can be taken by
 * another test run's server before this one binds it (the CI runs test passes side by side), and
 * then the other server would answer the PING.
 */
async function answers(port: number, pid: number | undefined): Promise<boolean> {
  const { stdout } = await run('redis-cli', ['-p', String(port), 'INFO', 'server']);
  const found = /^process_id:(\d+)/m.exec(stdout);
  if (found !== null && Number(found[1]) !== pid) {
    throw new NotOurServer(`port ${port} is another process's redis-server (${found[1]}), not ours (${pid})`);
  }
  return found !== null;
}

/**
 * A `redis-server` of the test's own, on a free port, that the test may kill, pause and restart
 * (on the same port) without touching the machine's shared Redis.
 */
export class RedisServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'circuitry-redis-'));
  #process: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    readonly extraArgs: readonly string[],
  ) {}

  static async start(extraArgs: readonly string[] = []): Promise<RedisServer> {
    // A port taken between finding it free and binding it (NotOurServer): another port (three tries).
    for (let attempt = 1; ; attempt++) {
      const server = new RedisServer(await freePort(), extraArgs);
      try {
        await server.restart();
        return server;
      } catch (error) {
        await server.stop();
        if (!(error instanceof NotOurServer) || attempt === 3) throw error;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** A client with settings that suit tests: no retry storm, fail fast when the server is gone. */
  client(options: RedisOptions = {}): Redis {
    return new Redis({ port: this.port, host: '127.0.0.1', lazyConnect: false, ...options });
  }

  /** Starts the server (again) on the same port; resolves when it answers PING. */
  async restart(): Promise<void> {
    if (this.#process !== null) throw new Error('already running');
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
        ...this.extraArgs,
      ],
      { stdio: 'ignore' },
    );
    this.#process = child;
    child.on('exit', () => {
      if (this.#process === child) this.#process = null;
    });
    await until(
      () => answers(this.port, child.pid),
      `redis-server on ${this.port}`,
      10_000,
      () => {
        // Ours exited (its port was taken, say): waiting longer cannot help.
        if (this.#process !== child) throw new NotOurServer(`redis-server on ${this.port} exited at start`);
      },
    );
  }

  /** SIGKILL: the server is gone at once, with everything it held. */
  async kill(): Promise<void> {
    await this.#signal('SIGKILL');
  }

  /** SIGSTOP: the server holds its connections and answers nothing until `resume`. */
  pause(): void {
    this.#process?.kill('SIGSTOP');
  }

  resume(): void {
    this.#process?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    this.resume();
    await this.#signal('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async #signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.#process;
    if (child === null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }
}

/** A Redis Cluster of three masters (no replicas) on free ports, made with `redis-cli --cluster create`. */
export class RedisCluster {
  private constructor(readonly nodes: readonly RedisServer[]) {}

  static async start(): Promise<RedisCluster> {
    const nodes = await Promise.all(
      [0, 1, 2].map(async () => {
        const port = await freePort();
        return RedisServer.start([
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--cluster-node-timeout',
          '2000',
        ]);
      }),
    );
    const cluster = new RedisCluster(nodes);
    try {
      await run('redis-cli', [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ]);
      await until(async () => {
        const { stdout } = await run('redis-cli', ['-p', String(nodes[0]!.port), 'CLUSTER', 'INFO']);
        return stdout.includes('cluster_state:ok');
      }, 'the cluster to be ok');
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  get startupNodes(): Array<{ host: string; port: number }> {
    return this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}

/**
 * Starts a `redis-server` of the suite's own before its tests and stops it after; `use` receives
 * the server and a client of it (disconnected at the end).
 */
export function useRedisServer(use: (server: RedisServer, client: Redis) => void): void {
  let server: RedisServer | undefined;
  let client: Redis | undefined;
  before(async () => {
    server = await RedisServer.start();
    client = server.client();
    use(server, client);
  });
  after(async () => {
    client?.disconnect();
    await server?.stop();
  });
}
