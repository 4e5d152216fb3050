import { CircuitBreaker, initKey, internal } from './breaker.js';
import type { CircuitState, WindowCounts } from './core/types.js';
import { InvalidOptionError } from './errors.js';
import type { BreakerOptions, ResolvedOptions } from './options.js';
import { FACTORY_ONLY_KEYS, checkKeys, invalid, resolveOptions } from './options.js';
import type { StateChangeMessage } from './store.js';
import { MemoryStore } from './stores/memory.js';

export interface FactoryOptions<Context = unknown> extends BreakerOptions<Context> {
  /**
   * The breaker name for a base name and a context: the key of the shared state. Use stable
   * ids (a tenant id), never secrets. @defaultValue the base name
   */
  readonly name?: (baseName: string, context: Context | undefined) => string;
  /** Options that differ for one base name (a per-circuit error matcher, another trip policy). */
  readonly byBaseName?: Readonly<Record<string, BreakerOptions<Context>>>;
  /**
   * How many breaker objects the factory keeps. The least recently used idle one is dropped
   * past this (its state stays in the store); one holding a permit never is. @defaultValue 10_000
   */
  readonly maxBreakers?: number;
}

export interface BreakerHealth<Context = unknown> {
  readonly name: string;
  readonly baseName: string;
  readonly context: Context | undefined;
  readonly state: CircuitState;
  readonly counts: WindowCounts;
  readonly failureRate: number;
  readonly retryAfterMs: number;
  readonly generation: number;
}

export interface HealthReport<Context = unknown> {
  /** False when any breaker is not closed. */
  readonly healthy: boolean;
  readonly breakers: ReadonlyArray<BreakerHealth<Context>>;
}

/**
 * Makes and keeps breakers: one per breaker name, with options resolved once per base name.
 * Breakers of one factory share its store (a single `MemoryStore` by default) and receive the
 * state changes the store pushes.
 */
export class BreakerFactory<Context = unknown> {
  readonly #name: (baseName: string, context: Context | undefined) => string;
  readonly #base: ResolvedOptions<Context>;
  readonly #byBaseName = new Map<string, ResolvedOptions<Context>>();
  readonly #maxBreakers: number;
  readonly #breakers = new Map<string, CircuitBreaker<Context>>();
  #unsubscribe: Promise<(() => Promise<void>) | null> | null = null;
  #closed = false;

  constructor(options: FactoryOptions<Context> = {}) {
    checkKeys(options, 'factory options', FACTORY_ONLY_KEYS);
    const { name, byBaseName, maxBreakers, ...breakerOptions } = options;
    if (name !== undefined && typeof name !== 'function') throw invalid('name', 'a function', name);
    this.#name = name ?? ((baseName) => baseName);
    if (
      maxBreakers !== undefined &&
      (typeof maxBreakers !== 'number' || !Number.isInteger(maxBreakers) || maxBreakers < 1)
    ) {
      throw invalid('maxBreakers', 'an integer >= 1', maxBreakers);
    }
    this.#maxBreakers = maxBreakers ?? 10_000;
    // One store for every breaker of this factory, so same-named breakers share state.
    const clock = breakerOptions.clock;
    const shared: BreakerOptions<Context> = {
      ...breakerOptions,
      store: breakerOptions.store ?? new MemoryStore(clock === undefined ? {} : { clock }),
    };
    this.#base = resolveOptions(shared, 'factory options');
    if (byBaseName !== undefined) {
      if (typeof byBaseName !== 'object' || byBaseName === null) {
        throw invalid('byBaseName', 'an object of options by base name', byBaseName);
      }
      for (const [baseName, overrides] of Object.entries(byBaseName)) {
        checkKeys(overrides, `byBaseName["${baseName}"]`);
        if (overrides.store !== undefined || overrides.clock !== undefined) {
          throw new InvalidOptionError(
            `byBaseName["${baseName}"]`,
            `\`store\` and \`clock\` are set once per factory, not in byBaseName["${baseName}"]`,
          );
        }
        this.#byBaseName.set(
          baseName,
          resolveOptions({ ...shared, ...overrides }, `byBaseName["${baseName}"]`),
        );
      }
    }
  }

  /** The breaker for `baseName` and `context` (e.g. `{ tenantId }`), created on first use. */
  breakerFor(baseName: string, context?: Context): CircuitBreaker<Context> {
    if (typeof baseName !== 'string' || baseName.length === 0) {
      throw new TypeError(`Expected the base name to be a non-empty string, got ${String(baseName)}`);
    }
    const name = this.#name(baseName, context);
    if (typeof name !== 'string' || name.length === 0) {
      throw new TypeError(
        `The \`name\` option returned ${String(name)} for "${baseName}"; expected a non-empty string`,
      );
    }
    const breakers = this.#breakers;
    let breaker = breakers.get(name);
    if (breaker !== undefined) {
      // Least recently used order: Map keeps insertion order, so re-insert on use.
      breakers.delete(name);
      breakers.set(name, breaker);
      return breaker;
    }
    const resolved = this.#byBaseName.get(baseName) ?? this.#base;
    breaker = new CircuitBreaker<Context>(name, {
      [internal]: resolved,
      [initKey]: { baseName, context },
    } as BreakerOptions<Context>);
    breakers.set(name, breaker);
    if (breakers.size > this.#maxBreakers) this.#evict();
    if (this.#unsubscribe === null) this.#subscribe();
    return breaker;
  }

  /** The breakers this factory holds now, and their state, for a health endpoint or metrics. */
  async health(): Promise<HealthReport<Context>> {
    const breakers = [...this.#breakers.values()];
    const reports = await Promise.all(
      breakers.map(async (breaker): Promise<BreakerHealth<Context>> => {
        const snapshot = await breaker.state();
        return {
          name: breaker.name,
          baseName: breaker.baseName,
          context: breaker.context,
          state: snapshot.circuitState,
          counts: snapshot.counts,
          failureRate: snapshot.counts.failureRate,
          retryAfterMs: snapshot.retryAfterMs,
          generation: snapshot.generation,
        };
      }),
    );
    return { healthy: reports.every((r) => r.state === 'closed'), breakers: reports };
  }

  /** How many breaker objects the factory holds. */
  get size(): number {
    return this.#breakers.size;
  }

  /** Writes buffered outcomes and stops listening to the store's pushes. The user's client stays open. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#breakers.values()].map((breaker) => breaker.flush()));
    const unsubscribe = await this.#unsubscribe;
    this.#unsubscribe = null;
    if (unsubscribe) await unsubscribe();
  }

  #evict(): void {
    const excess = this.#breakers.size - this.#maxBreakers;
    let evicted = 0;
    for (const [name, breaker] of this.#breakers) {
      if (evicted >= excess) break;
      if (breaker[internal].busy()) continue;
      this.#breakers.delete(name);
      evicted += 1;
    }
  }

  #subscribe(): void {
    const store = this.#base.store;
    if (this.#closed || store.subscribe === undefined) {
      this.#unsubscribe = Promise.resolve(null);
      return;
    }
    this.#unsubscribe = store
      .subscribe((message: StateChangeMessage) => this.#breakers.get(message.key)?.[internal].notify(message))
      .then(
        (unsubscribe) => unsubscribe,
        (error: unknown) => {
          this.#base.logger?.warn({ err: error }, 'could not subscribe to store state changes; polling only');
          return null;
        },
      );
  }
}
