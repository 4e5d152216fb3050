import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

import type { StoreSpec } from './store-spec.js';
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
  /** Rejections by reason. */
  reasons: Record<string, number>;
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
    url?: string;
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

  /**
   * Has worker `index` start calls that never end (each holds what it was given: a concurrency
   * slot, a probe's lease), `callers` of them; nothing is sent back.
   */
  hold(index: number, name: string, callers: number): void {
    this.children[index]!.send({
      cmd: 'run',
      name,
      callers,
      callsPerCaller: 1,
      failEvery: 0,
      fnDelayMs: 0,
      hold: true,
    });
  }

  /** SIGKILL of worker `index`: gone at once, with whatever it held; the others carry on. */
  async kill(index: number): Promise<void> {
    const [child] = this.children.splice(index, 1);
    if (child === undefined || child.exitCode !== null) return;
    child.removeAllListeners('exit');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
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

export function sum(tallies: Tally[], field: Exclude<keyof Tally, 'reasons'>): number {
  return tallies.reduce((total, t) => total + t[field], 0);
}
