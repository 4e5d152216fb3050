import { CircuitBreaker, baseGate, initKey, internal, lruTick, tenantKey } from './breaker.js';
import type { BaseGate } from './breaker.js';
import { consecutiveFailures } from './core/policy.js';
import { Reporter } from './quorum.js';
import type { UnwrittenOutcomes } from './coordination.js';
import { FactoryStats } from './metrics.js';
import type { StoreOperationStats } from './metrics.js';
import { StoreHealth } from './store-health.js';
import type { CircuitState, WindowCounts } from './core/types.js';
import { describeValue } from './core/describe.js';
import { InvalidOptionError } from './errors.js';
import type { BreakerOptions, ResolvedOptions } from './options.js';
import { FACTORY_ONLY_KEYS, checkKeys, invalid, resolveOptions } from './options.js';
import type { StateChangeMessage } from './store.js';
import { MemoryStore } from './stores/memory.js';

export interface FactoryOptions<Context = unknown> extends BreakerOptions<Context> {
  /**
   * The breaker name for a base name and a context: the key of the shared state. Use stable
   * ids (a tenant id), never secrets. The default knows two context
   * fields: without a context the name is the base name; `{ tenantId }` gives `base/tenantId`,
   * `{ origin }` gives `base/origin`, both give `base/tenantId/origin`. Any other context is an
   * error from `breakerFor` until this option says how to name it.
   * @defaultValue the base name, then `/tenantId`, then `/origin`, for the fields the context has
   */
  readonly name?: (baseName: string, context: Context | undefined) => string;
  /** Options that differ for one base name (a per-circuit error matcher, another trip policy). */
  readonly byBaseName?: Readonly<Record<string, BreakerOptions<Context>>>;
  /**
   * How many breaker objects the factory keeps. The least recently used idle one is dropped
   * past this (its state stays in the store); one holding a permit never is. It does not bound
   * the store: a `MemoryStore` keeps a record per breaker that has one until it has been idle for
   * its retention (window + longest open period + probe lease; about 6 minutes by default), about
   * 350 bytes each. @defaultValue 10_000
   */
  readonly maxBreakers?: number;
}

/**
 * What the metrics exporters read from a factory (see `[instrument]`). Not public API.
 * @internal
 */
export interface FactoryInstruments<Context> {
  readonly stats: FactoryStats;
  breakers(): IterableIterator<CircuitBreaker<Context>>;
  storeOperations(): ReadonlyMap<string, StoreOperationStats>;
  readonly storeHealth: StoreHealth;
}

/** The factory's hook for the metrics exporters. Not public API. */
export const instrument = Symbol('circuitry.instrument');
/** The factory's breakers, for the health handler. Not public API. */
export const eachBreaker = Symbol('circuitry.eachBreaker');

/** Options of `BreakerFactory.close`. */
export interface CloseOptions {
  /** How long `close()` may take in all. @defaultValue 5_000 */
  readonly timeoutMs?: number;
}

/** What `close()` could not do. */
export interface CloseReport {
  /** True when everything buffered or kept reached the store (nothing unwritten, nothing in doubt). */
  readonly complete: boolean;
  /**
   * Outcomes that never reached the store (buffered, or kept while it did not answer), per
   * breaker. The store does not hold them: a caller may record them elsewhere, or replay them.
   */
  readonly unwritten: readonly UnwrittenOutcomes[];
  /**
   * Outcomes sent to the store that got no answer before the timeout (a write in flight, or one
   * whose reply was lost), per breaker. The store may hold them already: replaying them can count
   * them twice. Report them; do not replay them.
   */
  readonly inDoubt: readonly UnwrittenOutcomes[];
}

/**
 * One breaker in a `HealthReport`, as the store has it (while the store does not answer, as this
 * process sees it).
 */
export interface BreakerHealth<Context = unknown> {
  /** The breaker's name. */
  readonly name: string;
  /** The base name it was made for. */
  readonly baseName: string;
  /** The context it was made for, or undefined. */
  readonly context: Context | undefined;
  /** The state callers see. */
  readonly state: CircuitState;
  /** The counts over the window, and the failures in a row. */
  readonly counts: WindowCounts;
  /** `counts.failureRate`: failures / (successes + failures) over the window, 0 when nothing was counted. */
  readonly failureRate: number;
  /** How long until the breaker may admit a call again, in ms; 0 when it admits now. */
  readonly retryAfterMs: number;
  /** The record's generation: it rises with every change of state or override. */
  readonly generation: number;
}

/** What `BreakerFactory.health` answers. */
export interface HealthReport<Context = unknown> {
  /** False when any breaker is not closed. */
  readonly healthy: boolean;
  /** Every breaker the factory holds now. */
  readonly breakers: ReadonlyArray<BreakerHealth<Context>>;
}

/**
 * Makes and keeps breakers: one per breaker name, with options resolved once per base name.
 * Breakers of one factory share its store (a single `MemoryStore` by default) and receive the
 * state changes the store pushes.
 */
export class BreakerFactory<Context = unknown> {
  /** The user's `name` option, or null for `defaultBreakerName` (inlined on the hot path). */
  readonly #name: ((baseName: string, context: Context | undefined) => string) | null;
  readonly #base: ResolvedOptions<Context>;
  readonly #byBaseName = new Map<string, ResolvedOptions<Context>>();
  readonly #maxBreakers: number;
  readonly #breakers = new Map<string, CircuitBreaker<Context>>();
  /** The breakers of `{ tenantId }` contexts again, by base name and tenant id (see `breakerFor`). */
  readonly #tenants = new Map<string, Map<string, CircuitBreaker<Context>>>();
  #lastBase: string | null = null;
  #lastTenants: Map<string, CircuitBreaker<Context>> | undefined = undefined;
  /**
   * `breakerFor` calls so far (each stamps the breaker it answers), and within how many of the
   * last ones a breaker counts as used lately: spared by an eviction (see `#evict`).
   */
  #lookups = 0;
  readonly #youngLookups: number;
  #unsubscribe: Promise<(() => Promise<void>) | null> | null = null;
  #closed = false;
  readonly #subscription = new AbortController();
  /** The options of every base name before resolving, for its base breaker (`escalate`). */
  readonly #raw: BreakerOptions<Context>;
  readonly #rawByBaseName = new Map<string, BreakerOptions<Context>>();
  /** The gates of base names that escalate, by base name, made with their first breaker. */
  readonly #gates = new Map<string, Escalation<Context>>();
  /** Who this factory's breakers report failures as, for a quorum (made on first need). */
  #reporter: Reporter | null = null;
  /** Their base breakers, by name (`base/*`), for pushes. */
  readonly #baseBreakers = new Map<string, CircuitBreaker<Context>>();
  #stats: FactoryStats | null = null;

  constructor(options: FactoryOptions<Context> = {}) {
    checkKeys(options, 'factory options', FACTORY_ONLY_KEYS);
    const { name, byBaseName, maxBreakers, ...breakerOptions } = options;
    if (name !== undefined && typeof name !== 'function') throw invalid('name', 'a function', name);
    this.#name = name ?? null;
    if (
      maxBreakers !== undefined &&
      (typeof maxBreakers !== 'number' || !Number.isInteger(maxBreakers) || maxBreakers < 1)
    ) {
      throw invalid('maxBreakers', 'an integer >= 1', maxBreakers);
    }
    this.#maxBreakers = maxBreakers ?? 10_000;
    this.#youngLookups = Math.max(0, Math.floor(this.#maxBreakers / 2) - 1);
    // One store for every breaker of this factory, so same-named breakers share state.
    const clock = breakerOptions.clock;
    const shared: BreakerOptions<Context> = {
      ...breakerOptions,
      store: breakerOptions.store ?? new MemoryStore(clock === undefined ? {} : { clock }),
    };
    this.#base = resolveOptions(shared, 'factory options');
    this.#raw = shared;
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
        this.#rawByBaseName.set(baseName, { ...shared, ...overrides });
      }
    }
  }

  /**
   * The breaker for `baseName` and `context` (e.g. `{ tenantId }`), created on first use. Without
   * a `name` option, a context other than `{ tenantId?, origin? }` throws `InvalidOptionError`
   * (see the `name` option).
   */
  breakerFor(baseName: string, context?: Context): CircuitBreaker<Context> {
    // The per-job or per-request call, `{ tenantId }` or `{ origin }` alone, for a breaker held
    // already: found by that value in a map of its base name (both name `base/value`), without
    // building the name (a new string, hashed on every lookup, costs more than the call). Kept
    // apart from the rest so this function stays small enough for V8 to inline into the caller.
    // A base name that is not a valid one has no map: the rest says what is wrong with it.
    if (context !== undefined && this.#name === null) {
      const tenant = singleKey(context);
      if (tenant !== null) {
        // Per-job calls name one base name again and again: its map is kept at hand.
        const tenants = baseName === this.#lastBase ? this.#lastTenants : this.#tenantsOf(baseName);
        const found = tenants?.get(tenant);
        if (found !== undefined) return this.#touch(found);
      }
    }
    return this.#find(baseName, context);
  }

  /** `breakerFor` past its fast path: checks the base name, names the breaker, finds or makes it. */
  #find(baseName: string, context: Context | undefined): CircuitBreaker<Context> {
    if (typeof baseName !== 'string' || baseName.length === 0) {
      throw new TypeError(`Expected the base name to be a non-empty string, got ${String(baseName)}`);
    }
    const custom = this.#name;
    let name: string;
    let tenant: string | null = null;
    if (custom !== null) {
      name = custom(baseName, context);
      if (typeof name !== 'string' || name.length === 0) {
        throw new TypeError(
          `The \`name\` option returned ${String(name)} for "${baseName}"; expected a non-empty string`,
        );
      }
    } else if (context === undefined) {
      // No context, no `name` option: the base name itself, with nothing allocated.
      name = baseName;
    } else {
      // Not held yet (`breakerFor` looked in the map of its base name), or not `{ tenantId }` or
      // `{ origin }` alone: named in full.
      tenant = singleKey(context);
      name = defaultBreakerName(baseName, context);
    }
    const found = this.#breakers.get(name);
    if (found !== undefined) return this.#touch(found);
    const resolved = this.#byBaseName.get(baseName) ?? this.#base;
    const reporter = resolved.quorum === null ? null : (this.#reporter ??= new Reporter(resolved.store));
    const breaker = new CircuitBreaker<Context>(name, {
      [internal]: resolved,
      [initKey]: { baseName, context, reporter },
    } as BreakerOptions<Context>);
    breaker[lruTick] = ++this.#lookups;
    this.#breakers.set(name, breaker);
    if (tenant !== null) {
      let tenants = this.#tenantsOf(baseName);
      if (tenants === undefined) {
        this.#tenants.set(baseName, (tenants = new Map<string, CircuitBreaker<Context>>()));
        this.#lastTenants = tenants;
      }
      tenants.set(tenant, breaker);
      breaker[tenantKey] = tenant;
    }
    if (resolved.escalate !== null) breaker[baseGate] = this.#gateOf(baseName, resolved.escalate).gate;
    if (this.#stats !== null) breaker[internal].instrument(this.#stats.forBase(baseName));
    if (this.#breakers.size > this.#maxBreakers) this.#evict();
    if (this.#unsubscribe === null) this.#subscribe();
    return breaker;
  }

  /**
   * The breaker of a base name that escalates (`escalate`): named `base/*`, it opens when too
   * many breakers of the base name are open, and while it is open or probing every breaker of the
   * base name rejects with reason `'base-open'`. Null for a base name that does not escalate.
   * Its state changes reach the factory's `onStateChange` like any breaker's; `circuitry list`
   * and the dashboard show it; an operator can force or reset it like any other.
   */
  baseBreaker(baseName: string): CircuitBreaker<Context> | null {
    const resolved = this.#byBaseName.get(baseName) ?? this.#base;
    if (resolved.escalate === null) return null;
    return this.#gateOf(baseName, resolved.escalate).breaker;
  }

  #gateOf(baseName: string, rule: NonNullable<ResolvedOptions<Context>['escalate']>): Escalation<Context> {
    const known = this.#gates.get(baseName);
    if (known !== undefined) return known;
    const raw = this.#rawByBaseName.get(baseName) ?? this.#raw;
    const name = `${baseName}/*`;
    // One failure opens it (the factory reports one when the share of open breakers is reached);
    // one probe decides; its view is trusted for a second, so a closed base costs no store call.
    const options = resolveOptions(
      {
        ...raw,
        trip: consecutiveFailures(1),
        halfOpenMaxCalls: 1,
        successThreshold: 1,
        maxStalenessMs: 1_000,
        flushIntervalMs: 0,
        slowCallMs: undefined,
        recovery: false,
        escalate: false,
        maxConcurrent: undefined,
        queueMs: undefined,
        quorum: false,
      },
      `escalate of "${baseName}"`,
    );
    const breaker = new CircuitBreaker<Context>(name, {
      [internal]: options,
      [initKey]: { baseName, context: undefined },
    } as BreakerOptions<Context>);
    const escalation: Escalation<Context> = {
      breaker,
      rule,
      checkedAt: -Infinity,
      tripping: false,
      settled: new WeakMap(),
      gate: {
        breaker: breaker as CircuitBreaker<unknown>,
        check: (opened) => this.#check(baseName, escalation, opened),
      },
    };
    breaker.onStateChange((event) => {
      if (event.to === 'closed') this.#baseClosed(baseName, escalation);
    });
    if (this.#stats !== null) breaker[internal].instrument(this.#stats.forBase(baseName));
    this.#gates.set(baseName, escalation);
    this.#baseBreakers.set(name, breaker);
    if (this.#unsubscribe === null) this.#subscribe();
    return escalation;
  }

  /**
   * A breaker of `baseName` saw itself open: opens the base name when at least `minBreakers` of
   * its breakers are held here and more than `maxOpenFraction` of them are open. On every open,
   * and on a rejection at most every 50 ms per base name (rejections come by the thousand), and
   * not while the base name is not closed.
   */
  #check(baseName: string, escalation: Escalation<Context>, opened: boolean): void {
    if (escalation.tripping || this.#closed) return;
    const now = performance.now();
    if (!opened && now - escalation.checkedAt < 50) return;
    escalation.checkedAt = now;
    const base = escalation.breaker[internal].view();
    if (base.state !== 'closed' || base.override !== null) return;
    let held = 0;
    let open = 0;
    for (const breaker of this.#breakers.values()) {
      if (breaker.baseName !== baseName) continue;
      held += 1;
      const view = breaker[internal].view();
      if (
        (view.state === 'open' || view.override === 'forced-open') &&
        escalation.settled.get(breaker) !== view.generation
      ) {
        open += 1;
      }
    }
    const { minBreakers, maxOpenFraction } = escalation.rule;
    if (held < minBreakers || open <= maxOpenFraction * held) return;
    escalation.tripping = true;
    escalation.breaker
      .acquire()
      .then((permit) => (permit.probe ? permit.ignore() : permit.failure()))
      .catch(() => undefined)
      .finally(() => {
        escalation.tripping = false;
      });
  }

  /**
   * The base name closed (its probe succeeded): breakers that were open before stop counting
   * toward the next escalation until they open again (a new generation), so the base name is
   * not opened again at once on what made it open the first time.
   */
  #baseClosed(baseName: string, escalation: Escalation<Context>): void {
    for (const breaker of this.#breakers.values()) {
      if (breaker.baseName !== baseName) continue;
      const view = breaker[internal].view();
      if (view.state === 'open' || view.override === 'forced-open')
        escalation.settled.set(breaker, view.generation);
    }
  }

  /** The map of `baseName`'s tenants (see `breakerFor`), remembered as the last one used. */
  #tenantsOf(baseName: string): Map<string, CircuitBreaker<Context>> | undefined {
    this.#lastBase = baseName;
    return (this.#lastTenants = this.#tenants.get(baseName));
  }

  /**
   * A breaker looked up again. Least recently used order: Map keeps insertion order, so a breaker
   * in use is re-inserted, but only once it is older than half the registry's lookups: a breaker
   * looked up again within that many lookups cannot have had maxBreakers breakers inserted after
   * it, so it is never the one evicted, and a hot breaker costs a lookup, not a delete and a set.
   */
  #touch(breaker: CircuitBreaker<Context>): CircuitBreaker<Context> {
    // Only a stamp: the order of the map catches up when a breaker has to go (`#evict`).
    breaker[lruTick] = ++this.#lookups;
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

  /**
   * The factory's metrics, kept from the first call of this on (nothing is kept or paid before):
   * for `circuitry/prometheus` and `circuitry/opentelemetry`. Not public API.
   * @internal
   */
  [instrument](): FactoryInstruments<Context> {
    if (this.#stats === null) {
      const stats = (this.#stats = new FactoryStats());
      for (const breaker of this.#breakers.values()) {
        breaker[internal].instrument(stats.forBase(breaker.baseName));
      }
    }
    const stats = this.#stats;
    return {
      stats,
      breakers: () => this.#breakers.values(),
      storeOperations: () => StoreHealth.of(this.#base.store).operations,
      storeHealth: StoreHealth.of(this.#base.store),
    };
  }

  /**
   * The breaker objects the factory holds now, without asking the store. Not public API.
   * @internal
   */
  [eachBreaker](): IterableIterator<CircuitBreaker<Context>> {
    return this.#breakers.values();
  }

  /** How many breaker objects the factory holds. */
  get size(): number {
    return this.#breakers.size;
  }

  /**
   * Ends the factory's work, within `timeoutMs` whatever the store client's retry settings:
   * writes every breaker's buffered outcomes and those kept while the store did not answer
   * (trying the store even if it was failing), stops listening to the store's pushes and closes
   * the connection the store opened for them. The user's own client stays open: close it after.
   * Resolves with what could not be written (also logged); never rejects.
   */
  async close(options: CloseOptions = {}): Promise<CloseReport> {
    const timeoutMs = options.timeoutMs ?? 5_000;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw invalid('timeoutMs', 'a finite number >= 0', timeoutMs);
    }
    this.#closed = true;
    // Closes what the store opened for pushes at once, even if subscribing has not finished.
    this.#subscription.abort();
    const breakers = [...this.#breakers.values(), ...this.#baseBreakers.values()];
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = Promise.resolve(null);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    const work = Promise.all([
      ...breakers.map((breaker) =>
        breaker[internal].drain(performance.now() + timeoutMs).catch(() => undefined),
      ),
      Promise.resolve(unsubscribe)
        .then((stop) => stop?.())
        .catch(() => undefined),
    ]);
    await Promise.race([work, deadline]);
    clearTimeout(timer);
    const unwritten: UnwrittenOutcomes[] = [];
    const inDoubt: UnwrittenOutcomes[] = [];
    for (const breaker of breakers) {
      const left = breaker[internal].unwritten();
      if (left?.unwritten != null) unwritten.push(left.unwritten);
      if (left?.inDoubt != null) inDoubt.push(left.inDoubt);
    }
    for (const [list, what] of [
      [unwritten, 'not written to the store'],
      [inDoubt, 'in doubt (sent, no reply: the store may hold them)'],
    ] as const) {
      if (list.length === 0) continue;
      const counts = list.reduce(
        (sum, u) => ({
          successes: sum.successes + u.successes,
          failures: sum.failures + u.failures,
          ignored: sum.ignored + u.ignored,
        }),
        { successes: 0, failures: 0, ignored: 0 },
      );
      if (this.#base.logger !== null) {
        this.#base.logger.warn(
          { breakers: list.length, ...counts, inDoubt: list === inDoubt },
          list === inDoubt
            ? 'circuit breaker factory closed with outcomes in doubt: sent, no reply (the store may hold them; do not replay them)'
            : 'circuit breaker factory closed with outcomes it could not write',
        );
      } else {
        process.emitWarning(
          `circuitry: closed with outcomes of ${list.length} breaker(s) ${what} (${counts.successes} successes, ${counts.failures} failures, ${counts.ignored} ignored)`,
          'CircuitryCloseWarning',
        );
      }
    }
    return { complete: unwritten.length === 0 && inDoubt.length === 0, unwritten, inDoubt };
  }

  #evict(): void {
    const breakers = this.#breakers;
    // A sixty-fourth more than needed at a time: a Map keeps deleted entries at its start until it
    // is rebuilt, so evicting one per insert would walk them all on every new tenant.
    const excess = breakers.size - this.#maxBreakers + Math.floor(this.#maxBreakers / 64);
    // The map is in the order breakers were made or last moved, oldest first; a lookup only stamps
    // the breaker (`#touch`). So a breaker found here that was used in the last half of
    // `maxBreakers` lookups gets a second chance: it moves to the end, and an older one goes.
    const recent = this.#lookups - this.#youngLookups;
    const spared: CircuitBreaker<Context>[] = [];
    let evicted = 0;
    for (const [name, breaker] of breakers) {
      if (evicted >= excess) break;
      if (breaker[internal].busy()) continue;
      if (breaker[lruTick] >= recent) spared.push(breaker);
      else evicted += this.#drop(name, breaker);
    }
    for (const breaker of spared) {
      breakers.delete(breaker.name);
      breakers.set(breaker.name, breaker);
    }
    // Every one used lately (a factory too small for the tenants in play): the oldest go anyway.
    if (evicted < excess) {
      for (const [name, breaker] of breakers) {
        if (evicted >= excess) break;
        if (!breaker[internal].busy()) evicted += this.#drop(name, breaker);
      }
    }
  }

  /** Forgets `breaker` (its state stays in the store). Returns 1, for counting. */
  #drop(name: string, breaker: CircuitBreaker<Context>): number {
    this.#breakers.delete(name);
    const tenant = breaker[tenantKey];
    if (tenant !== null) this.#tenants.get(breaker.baseName)?.delete(tenant);
    return 1;
  }

  #subscribe(): void {
    const store = this.#base.store;
    if (this.#closed || store.subscribe === undefined) {
      this.#unsubscribe = Promise.resolve(null);
      return;
    }
    this.#unsubscribe = store
      .subscribe(
        (message: StateChangeMessage) => {
          const breaker = this.#breakers.get(message.key);
          if (breaker !== undefined) return breaker[internal].notify(message);
          const base = this.#baseBreakers.get(message.key);
          if (base === undefined) return;
          base[internal].notify(message);
          if (message.to === 'closed') {
            const escalation = this.#gates.get(base.baseName);
            if (escalation !== undefined) this.#baseClosed(base.baseName, escalation);
          }
        },
        {
          onResync: () => {
            this.#breakers.forEach((breaker) => breaker[internal].resync());
            this.#baseBreakers.forEach((breaker) => breaker[internal].resync());
          },
          signal: this.#subscription.signal,
        },
      )
      .then(
        (unsubscribe) => unsubscribe,
        (error: unknown) => {
          this.#base.logger?.warn({ err: error }, 'could not subscribe to store state changes; polling only');
          return null;
        },
      );
  }
}

/** A base name's escalation (`escalate`): its base breaker, its rule and the gate breakers get. */
interface Escalation<Context> {
  readonly breaker: CircuitBreaker<Context>;
  readonly rule: NonNullable<ResolvedOptions<Context>['escalate']>;
  readonly gate: BaseGate;
  /** When the share of open breakers was last counted (performance.now()). */
  checkedAt: number;
  /** True while the open of the base name is being written. */
  tripping: boolean;
  /** Breakers open when the base name last closed, with that open's generation (see `#baseClosed`). */
  readonly settled: WeakMap<CircuitBreaker<Context>, number>;
}

/**
 * The value of a context that is `{ tenantId }` or `{ origin }`, a string, with nothing else
 * defined, or null (then `defaultBreakerName` names it, or says what is wrong with it). Either
 * names the breaker `base/value`, so one map holds both. The value is checked only when a breaker
 * is made for it (`defaultBreakerName`): an invalid one is never in the map.
 */
function singleKey(context: unknown): string | null {
  if (typeof context !== 'object' || context === null) return null;
  let single: string | null = null;
  for (const key in context) {
    const value = (context as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (single !== null || (key !== 'tenantId' && key !== 'origin') || typeof value !== 'string') return null;
    single = value;
  }
  return single;
}

/**
 * The breaker name a factory without a `name` option gives (`breakerFor` answers the base name
 * itself for no context without calling this): the key of the shared state.
 *
 * | context | name |
 * | --- | --- |
 * | none (`undefined`) | `base` |
 * | `{ tenantId }` | `base/tenantId` |
 * | `{ origin }` | `base/origin` |
 * | `{ tenantId, origin }` | `base/tenantId/origin` |
 *
 * The tenant comes first so that one tenant's breakers share a prefix (`circuitry list
 * sync/acme/`). `tenantId` is a non-empty string without `/` (so that `{ tenantId: 'a/b' }` and
 * `{ tenantId: 'a', origin: 'b' }` cannot share a breaker) or a finite number; `origin` is a
 * non-empty string. Fields whose value is `undefined` count as absent. Any other context (another
 * field, `null`, a string) throws `InvalidOptionError` naming `name`: the default cannot know
 * whether the other field tells breakers apart, and guessing wrong would silently share one
 * breaker between the tenants it was meant to isolate.
 */
function defaultBreakerName(baseName: string, context: unknown): string {
  if (context === undefined) return baseName;
  if (typeof context !== 'object' || context === null) {
    throw new InvalidOptionError(
      'name',
      `breakerFor("${baseName}", context): the default \`name\` knows a context of \`{ tenantId?, origin? }\` only, got ${describeValue(context)}; pass a \`name\` option (baseName, context) => string to the factory`,
    );
  }
  let tenantId: unknown;
  let origin: unknown;
  for (const key in context) {
    const value = (context as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (key === 'tenantId') tenantId = value;
    else if (key === 'origin') origin = value;
    else {
      throw new InvalidOptionError(
        'name',
        `breakerFor("${baseName}", context): the default \`name\` knows the context fields \`tenantId\` and \`origin\` only, got \`${key}\` in ${describeValue(context)}; pass a \`name\` option (baseName, context) => string to the factory`,
      );
    }
  }
  if (
    tenantId !== undefined &&
    !(typeof tenantId === 'string' && tenantId.length > 0 && !tenantId.includes('/') && tenantId !== '*') &&
    !(typeof tenantId === 'number' && Number.isFinite(tenantId))
  ) {
    throw new InvalidOptionError(
      'context.tenantId',
      `Expected \`context.tenantId\` (the context of breakerFor("${baseName}")) to be a non-empty string without "/" (and not "*", the name of a base breaker) or a finite number, got ${describeValue(tenantId)}`,
    );
  }
  if (origin !== undefined && !(typeof origin === 'string' && origin.length > 0 && origin !== '*')) {
    throw new InvalidOptionError(
      'context.origin',
      `Expected \`context.origin\` (the context of breakerFor("${baseName}")) to be a non-empty string other than "*" (the name of a base breaker), got ${describeValue(origin)}`,
    );
  }
  if (tenantId === undefined) {
    return origin === undefined ? baseName : `${baseName}/${origin}`;
  }
  const tenant = String(tenantId);
  return origin === undefined ? `${baseName}/${tenant}` : `${baseName}/${tenant}/${origin}`;
}
