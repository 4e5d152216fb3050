import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { freePort } from './redis-server.js';

const run = promisify(execFile);

/** The directory of initdb and pg_ctl: PG_BIN, else the newest /usr/lib/postgresql/<version>/bin. */
function binDir(): string {
  if (process.env.PG_BIN !== undefined) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] === undefined) throw new Error('no initdb: set PG_BIN');
  return join(root, versions[0], 'bin');
}

/** The uid and gid of the `postgres` user, to run the server as when we are root (initdb refuses root). */
async function postgresUser(): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  const { stdout } = await run('id', ['-u', 'postgres']);
  const { stdout: gid } = await run('id', ['-g', 'postgres']);
  return { uid: Number(stdout.trim()), gid: Number(gid.trim()) };
}

/**
 * A throwaway Postgres cluster of the test's own (initdb in a temporary directory, a free port,
 * trust auth, fsync off), which the test may restart with `-m immediate` (a crash) without
 * touching the machine's Postgres.
 */
export class PostgresServer {
  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly user: { uid: number; gid: number } | null,
  ) {}

  static async start(): Promise<PostgresServer> {
    const user = await postgresUser();
    const dir = mkdtempSync(join(tmpdir(), 'circuitry-pg-'));
    if (user !== null) {
      chmodSync(dir, 0o700);
      chownSync(dir, user.uid, user.gid);
    }
    const server = new PostgresServer(dir, await freePort(), user);
    await server.#pg('initdb', ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync']);
    await server.#pg('pg_ctl', [
      '-D',
      join(dir, 'data'),
      '-l',
      join(dir, 'log'),
      '-o',
      `-p ${server.port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60`,
      '-w',
      'start',
    ]);
    return server;
  }

  get connection(): { host: string; port: number; user: string; database: string } {
    return { host: '127.0.0.1', port: this.port, user: 'postgres', database: 'postgres' };
  }

  /** A crash and a restart: every connection is cut, uncommitted and unflushed work is lost. */
  async restartImmediate(): Promise<void> {
    // -l again: restart remembers the options, not the log file, and a postmaster writing to our
    // pipe would keep execFile waiting.
    await this.#pg('pg_ctl', [
      '-D',
      join(this.dir, 'data'),
      '-l',
      join(this.dir, 'log'),
      '-m',
      'immediate',
      '-w',
      'restart',
    ]);
  }

  async stop(): Promise<void> {
    await this.#pg('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']).catch(
      () => undefined,
    );
    rmSync(this.dir, { recursive: true, force: true });
  }

  async #pg(tool: string, args: string[]): Promise<void> {
    await run(join(binDir(), tool), args, {
      cwd: this.dir,
      ...(this.user === null ? {} : { uid: this.user.uid, gid: this.user.gid }),
    });
  }
}
