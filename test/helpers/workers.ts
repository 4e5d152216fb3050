import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

import type { StoreSpec } from './breaker-worker.js';
import { failureRate } from '../../src/index.js';
import { policyOf } from '../../src/testing/conformance.js';

/** The policy of workers started with `trip: 'count-all'` and a threshold of 1,000,000, to inspect their counts. */
export const COUNT_ALL_POLICY = policyOf({
  trip: failureRate(1, { minimumCalls: 1_000_000, windowMs: 600_000 }),
});

export interface Tally {
  fnCalls: number;
  value: number;
  boom: number;
  rejected: number;
  other: number;
}
interface Transition {
  name: string;
  from: string;
  to: string;
}

/** Worker processes on one shared store, each running the same load when asked. */
export class Workers {
  readonly transitions: Transition[] = [];
  /** What each worker's `factory.close()` reported when it was stopped. */
  readonly closeReports: { complete: boolean; unwritten: unknown[] }[] = [];
  private constructor(
    readonly children: ChildProcess[],
    readonly callers: number,
  ) {}

  static async start(count: number, callers: number, spec: StoreSpec, settings: object): Promise<Workers> {
    const children = Array.from({ length: count }, () =>
      fork(
        new URL('./breaker-worker.ts', import.meta.url).pathname,
        [JSON.stringify(spec), JSON.stringify(settings)],
        {
          execArgv: ['--import', 'tsx'],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        },
      ),
    );
    const workers = new Workers(children, callers);
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve, reject) => {
            child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
            child.on('message', (message: { ready?: true; transition?: Transition }) => {
              if (message.ready) resolve();
              if (message.transition) workers.transitions.push(message.transition);
            });
          }),
      ),
    );
    return workers;
  }

  /** Runs the same load in every worker at once; the per-worker tallies. */
  async run(load: {
    name: string;
    callsPerCaller: number;
    failEvery: number | 'all';
    fnDelayMs: number;
  }): Promise<Tally[]> {
    return Promise.all(
      this.children.map(
        (child) =>
          new Promise<Tally>((resolve) => {
            const onMessage = (message: { result?: Tally }): void => {
              if (message.result === undefined) return;
              child.off('message', onMessage);
              resolve(message.result);
            };
            child.on('message', onMessage);
            child.send({ cmd: 'run', callers: this.callers, ...load });
          }),
      ),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            child.removeAllListeners('exit');
            child.on('message', (message: { closed?: { complete: boolean; unwritten: unknown[] } }) => {
              if (message.closed !== undefined) this.closeReports.push(message.closed);
            });
            child.once('exit', () => resolve());
            child.send({ cmd: 'exit' });
          }),
      ),
    );
  }
}

export function sum(tallies: Tally[], field: keyof Tally): number {
  return tallies.reduce((total, t) => total + t[field], 0);
}
