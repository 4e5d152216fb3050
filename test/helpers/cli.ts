import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

import { BreakerFactory } from '../../src/index.js';
import type { Store } from '../../src/index.js';
import { DEFAULT_POLICY } from '../../src/cli/fleet.js';
import { outcomes } from '../../src/testing/conformance.js';

export const root = new URL('../..', import.meta.url).pathname;

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** The environment of a CLI child: none of the store variables of the machine running the tests. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('CIRCUITRY_')) delete env[key];
  return { ...env, ...extra };
}

/** Starts `npx circuitry ...` as users run it, from the sources. */
export function spawnCli(args: readonly string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli/cli.ts', ...args], {
    cwd: root,
    env: cliEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs the CLI to its end (killed after `limitMs`, which fails the test that expected an exit). */
export function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
  limitMs = 30_000,
): Promise<CliRun> {
  const started = Date.now();
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** Resolves with what a stream printed once `pattern` appears in it. */
export function waitForOutput(
  stream: NodeJS.ReadableStream,
  pattern: RegExp,
  limitMs = 15_000,
): Promise<string> {
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.off('data', onData);
      reject(new Error(`timed out waiting for ${pattern} in: ${text}`));
    }, limitMs);
    const onData = (chunk: Buffer | string): void => {
      text += chunk.toString();
      if (pattern.test(text)) {
        clearTimeout(timer);
        stream.off('data', onData);
        resolve(text);
      }
    };
    stream.on('data', onData);
  });
}

/** Trips `name` the way an application would: five failing calls through a breaker with the default policy. */
export async function trip(store: Store, name: string, failures = 5): Promise<void> {
  const factory = new BreakerFactory({ store, maxStalenessMs: 0, flushIntervalMs: 0, storeTimeoutMs: 5_000 });
  try {
    const breaker = factory.breakerFor(name);
    for (let i = 0; i < failures; i++) {
      await breaker.execute(() => Promise.reject(new Error('down'))).catch(() => {});
    }
  } finally {
    await factory.close();
  }
}

/** Records successes and failures in a closed breaker (no trip). */
export async function count(store: Store, name: string, successes: number, failures: number): Promise<void> {
  // Written straight to the store: a breaker under a count policy writes no success with nothing to reset.
  const { generation } = await store.acquire(name, DEFAULT_POLICY);
  await store.record(
    name,
    DEFAULT_POLICY,
    outcomes(generation, { successes, failures, trailingFailures: 0 }),
  );
}
