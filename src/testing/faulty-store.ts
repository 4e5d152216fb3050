import type {
  AcquireResult,
  BreakerPolicy,
  ForceOptions,
  OutcomeBatch,
  Override,
  Snapshot,
  UpdateResult,
} from '../core/types.js';
import type { ListPage, Store } from '../store.js';

/**
 * How a `FaultyStore` answers now:
 * - `up`: as the wrapped store does (after `latencyMs`);
 * - `error`: every call rejects, as a store that refuses connections;
 * - `hang`: every call waits until `release()`, as a stalled server (SIGSTOP);
 * - `garbage`: every call resolves with a reply of the wrong shape.
 */
export type FaultMode = 'up' | 'error' | 'hang' | 'garbage';

/** The store methods a `FaultyStore` wraps and counts. */
export type Method = 'acquire' | 'record' | 'inspect' | 'force' | 'reset' | 'list';

/** Options of `FaultyStore`. */
export interface FaultyStoreOptions {
  /** Delay before each answer: milliseconds, or a function of the method. @defaultValue 0 (next tick) */
  readonly latencyMs?: number | ((method: Method) => number);
  /** In mode `up`, the share of calls that fail anyway, drawn from `random`. @defaultValue 0 */
  readonly errorRate?: number;
  /** Where `errorRate` draws from: pass a seeded generator for a reproducible test. @defaultValue Math.random */
  readonly random?: () => number;
}

/** The error a `FaultyStore` fails with. */
export class InjectedStoreFault extends Error {
  constructor(method: string) {
    super(`injected store fault in ${method}`);
    this.name = 'InjectedStoreFault';
  }
}

/**
 * Wraps a store to make it fail on purpose: latency, errors (always, at a rate, or the next
 * `n` calls), hangs until released, and replies of the wrong shape. It always answers
 * asynchronously, as a networked store does, and counts calls per method. For testing what a
 * breaker does when its store misbehaves.
 */
export class FaultyStore implements Store {
  /** How calls are answered from now on. */
  mode: FaultMode = 'up';
  /** Calls started, per method. */
  readonly calls: Record<Method, number> = { acquire: 0, record: 0, inspect: 0, force: 0, reset: 0, list: 0 };
  readonly #inner: Store;
  readonly #latency: (method: Method) => number;
  readonly #errorRate: number;
  readonly #random: () => number;
  readonly #hung: Array<(fail: boolean) => void> = [];
  #failNext = 0;

  /** The wrapped store's `reset`, misbehaving like the rest; absent when the wrapped store has none. */
  readonly reset?: (key: string, policy: BreakerPolicy) => Promise<UpdateResult>;
  /** Whether the wrapped store enforces `maxConcurrent` (`Store.limitsConcurrency`). */
  readonly limitsConcurrency?: boolean;

  constructor(inner: Store, options: FaultyStoreOptions = {}) {
    this.#inner = inner;
    if (inner.limitsConcurrency !== undefined) this.limitsConcurrency = inner.limitsConcurrency;
    const reset = inner.reset?.bind(inner);
    if (reset !== undefined) this.reset = (key, policy) => this.#call('reset', () => reset(key, policy));
    const latency = options.latencyMs ?? 0;
    this.#latency = typeof latency === 'function' ? latency : () => latency;
    this.#errorRate = options.errorRate ?? 0;
    this.#random = options.random ?? Math.random;
  }

  /** Every call started, all methods together. */
  get totalCalls(): number {
    return Object.values(this.calls).reduce((a, b) => a + b, 0);
  }

  /** Calls waiting in mode `hang`. */
  get pending(): number {
    return this.#hung.length;
  }

  /** Fails the next `n` calls, whatever the mode. */
  failNext(n: number): void {
    this.#failNext += n;
  }

  /** Lets every hung call go on to the wrapped store, or (with `fail`) fail. */
  release(fail = false): void {
    for (const go of this.#hung.splice(0)) go(fail);
  }

  acquire(key: string, policy: BreakerPolicy): Promise<AcquireResult> {
    return this.#call('acquire', () => this.#inner.acquire(key, policy));
  }

  record(key: string, policy: BreakerPolicy, batch: OutcomeBatch): Promise<UpdateResult> {
    return this.#call('record', () => this.#inner.record(key, policy, batch));
  }

  inspect(key: string, policy: BreakerPolicy): Promise<Snapshot | null> {
    return this.#call('inspect', () => this.#inner.inspect(key, policy));
  }

  force(
    key: string,
    policy: BreakerPolicy,
    override: Override | null,
    options?: ForceOptions,
  ): Promise<UpdateResult> {
    return this.#call('force', () => this.#inner.force(key, policy, override, options));
  }

  list(prefix: string, cursor?: string | null): Promise<ListPage> {
    return this.#call('list', () => this.#inner.list(prefix, cursor));
  }

  async #call<T>(method: Method, answer: () => T | PromiseLike<T>): Promise<T> {
    this.calls[method] += 1;
    const mode = this.mode;
    const latency = this.#latency(method);
    await new Promise((resolve) => (latency > 0 ? setTimeout(resolve, latency) : setImmediate(resolve)));
    if (this.#failNext > 0) {
      this.#failNext -= 1;
      throw new InjectedStoreFault(method);
    }
    switch (mode) {
      case 'error':
        throw new InjectedStoreFault(method);
      case 'garbage':
        return 'OK' as unknown as T;
      case 'hang':
        await new Promise<void>((resolve, reject) =>
          this.#hung.push((fail) => (fail ? reject(new InjectedStoreFault(method)) : resolve())),
        );
        return answer();
      case 'up':
        if (this.#errorRate > 0 && this.#random() < this.#errorRate) throw new InjectedStoreFault(method);
        return answer();
    }
  }
}
