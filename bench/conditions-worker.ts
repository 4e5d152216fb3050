/**
 * Run by bench/conditions.ts, one child process per condition, so what one condition leaves in a
 * process (feedback V8 collected, code it optimised, libraries it loaded) is not carried into
 * another: `node --import tsx bench/conditions-worker.ts <mode> <library URL> [--quick]`.
 * The library URL is the compiled build (bench/compiled.ts) or src/index.ts (through tsx). Prints
 * one JSON line: for each measurement, the median ns per op of each contender.
 *
 * Modes:
 * - `alone-circuitry`, `alone-cockatiel`: that library only is imported (beside a bare loop).
 * - `together`: circuitry, cockatiel and opossum imported and run in the same rounds.
 * - `warm` (with `fresh`): every library's failure, open (rejection), half-open and recovery
 *   paths run on several breakers first; then the closed path on a fresh closed breaker; with
 *   `fresh`, then a new breaker (new name, or new factory) every round.
 * - `tenants-<n>-sized`, `tenants-<n>-default`: `factory.breakerFor('api', { tenantId })
 *   .execute(noop)` round-robin over n tenants (a factory with `maxBreakers: n`, or the default
 *   10,000), beside cockatiel's single policy.
 *
 * Every contender's loop is a function literal of its own: V8 shares the feedback of closures made
 * from one literal, so a shared `loop(call)` would make its `call()` site megamorphic for all of
 * them, which a caller's own code is not.
 */
import type * as Circuitry from '../src/index.js';

import { ROUNDS, down, failing, interleaved, noop, quick, scale, sleep, swallow } from './harness.js';
import type { Run } from './harness.js';

type Call = (fn: () => Promise<unknown>) => Promise<unknown>;
type Measurements = Record<string, Record<string, number>>;

const [mode = '', libraryUrl = ''] = process.argv.slice(2);
const OPS = Math.round((mode.startsWith('tenants-') ? 100_000 : 200_000) * scale);
const IN_FLIGHT = 1_000;
const measurements: Measurements = {};
const cleanups: (() => unknown)[] = [];

const tick = (): Promise<number> => new Promise((resolve) => setImmediate(() => resolve(1)));

/** 1,000 loops at once, each taking calls while `ops` are left; `loop` is the contender's own literal. */
function concurrently(loop: (more: () => boolean) => Promise<void>): Run {
  return async () => {
    let left = OPS;
    const more = (): boolean => left-- > 0;
    await Promise.all(Array.from({ length: IN_FLIGHT }, () => loop(more)));
  };
}

async function loadCircuitry(): Promise<typeof Circuitry> {
  return (await import(libraryUrl)) as typeof Circuitry;
}

// ---- every path: failures, trip, rejections, half-open probe that fails, one that succeeds ----
/** Whether `call(fn)` ran `fn` (it resolved, or rejected with `fn`'s own error) rather than being rejected. */
const admitted = (call: Call, fn: () => Promise<unknown>): Promise<boolean> =>
  call(fn).then(
    () => true,
    (error: unknown) => error === down,
  );

async function untilAdmitted(call: Call, fn: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 2_000; i++) {
    if (await admitted(call, fn)) return;
    await sleep(1);
  }
  throw new Error('a breaker never let a probe through');
}

/** What the warm-up did, per library: calls that ran and failed, ran and succeeded, were rejected. */
const warmCounts: Record<string, number> = {};

/** Runs one breaker through each path `cycles` times. */
async function exercise(library: string, through: Call, cycles: number): Promise<void> {
  const count = (what: string): void => {
    const key = `${library} ${what}`;
    warmCounts[key] = (warmCounts[key] ?? 0) + 1;
  };
  const call: Call = (fn) =>
    through(fn).then(
      (value) => {
        count('succeeded');
        return value;
      },
      (error: unknown) => {
        count(error === down ? 'failed' : 'rejected');
        throw error;
      },
    );
  for (let c = 0; c < cycles; c++) {
    // Failures that do not trip (a success between them), then failures until it opens.
    for (let i = 0; i < 3; i++) {
      await call(failing).catch(swallow);
      await call(failing).catch(swallow);
      await call(noop).catch(swallow);
    }
    for (let i = 0; i < 100 && (await admitted(call, failing)); i++);
    for (let i = 0; i < 200; i++) await call(noop).catch(swallow); // rejected while open
    await untilAdmitted(call, failing); // half-open: the probe fails, it opens again
    for (let i = 0; i < 50; i++) await call(noop).catch(swallow);
    await untilAdmitted(call, noop); // half-open: the probe succeeds, it closes
    for (let i = 0; i < 100; i++) await call(noop).catch(swallow);
  }
}

const BREAKERS = 4;
// Long enough that the 200 calls meant to be rejected are all made while it is open, with the
// 12 breakers' warm-ups interleaved.
const OPEN_MS = 100;
const CYCLES = quick ? 1 : 3;

// ---- modes ---------------------------------------------------------------------------------------
async function alone(library: 'circuitry' | 'cockatiel'): Promise<void> {
  let closed: Record<string, Run>;
  let inFlight: Record<string, Run>;
  if (library === 'circuitry') {
    const { BreakerFactory } = await loadCircuitry();
    const breaker = new BreakerFactory().breakerFor('api');
    closed = {
      circuitry: async () => {
        for (let i = 0; i < OPS; i++) await breaker.execute(noop);
      },
    };
    inFlight = {
      circuitry: concurrently(async (more) => {
        while (more()) await breaker.execute(tick);
      }),
    };
  } else {
    const { ConsecutiveBreaker, circuitBreaker, handleAll } = await import('cockatiel');
    const policy = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
    closed = {
      cockatiel: async () => {
        for (let i = 0; i < OPS; i++) await policy.execute(noop);
      },
    };
    inFlight = {
      cockatiel: concurrently(async (more) => {
        while (more()) await policy.execute(tick);
      }),
    };
  }
  measurements.closed = await interleaved(OPS, {
    bare: async () => {
      for (let i = 0; i < OPS; i++) await noop();
    },
    ...closed,
  });
  measurements.inFlight = await interleaved(OPS, {
    bare: concurrently(async (more) => {
      while (more()) await tick();
    }),
    ...inFlight,
  });
}

async function together(): Promise<void> {
  const { BreakerFactory } = await loadCircuitry();
  const { ConsecutiveBreaker, circuitBreaker, handleAll } = await import('cockatiel');
  const { default: Opossum } = await import('opossum');
  const breaker = new BreakerFactory().breakerFor('api');
  const policy = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
  const opossum = new Opossum(noop, { timeout: false, resetTimeout: 30_000 });
  cleanups.push(() => opossum.shutdown());
  measurements.closed = await interleaved(OPS, {
    bare: async () => {
      for (let i = 0; i < OPS; i++) await noop();
    },
    circuitry: async () => {
      for (let i = 0; i < OPS; i++) await breaker.execute(noop);
    },
    cockatiel: async () => {
      for (let i = 0; i < OPS; i++) await policy.execute(noop);
    },
    opossum: async () => {
      for (let i = 0; i < OPS; i++) await opossum.fire();
    },
  });
  measurements.inFlight = await interleaved(OPS, {
    bare: concurrently(async (more) => {
      while (more()) await tick();
    }),
    circuitry: concurrently(async (more) => {
      while (more()) await breaker.execute(tick);
    }),
    cockatiel: concurrently(async (more) => {
      while (more()) await policy.execute(tick);
    }),
    opossum: concurrently(async (more) => {
      while (more()) await opossum.fire();
    }),
  });
}

async function warm(fresh: boolean): Promise<void> {
  const { BreakerFactory } = await loadCircuitry();
  const { ConsecutiveBreaker, circuitBreaker, handleAll } = await import('cockatiel');
  const { default: Opossum } = await import('opossum');
  // One factory, as an application has: the flaky dependency's breakers open for OPEN_MS (else
  // defaults: jitter, backoff up to 2x); the breaker timed after is `api`, default options.
  const transition = (library: string, to: string): void => {
    const key = `${library} to ${to}`;
    warmCounts[key] = (warmCounts[key] ?? 0) + 1;
  };
  const factory = new BreakerFactory({
    byBaseName: {
      flaky: {
        openMs: OPEN_MS,
        backoff: { maxOpenMs: 2 * OPEN_MS },
        onStateChange: (_name, _context, _from, to) => transition('circuitry', to),
      },
    },
  });
  const cockatielStates = ['closed', 'open', 'half-open', 'isolated'];
  const flakyCockatiel = Array.from({ length: BREAKERS }, () => {
    const p = circuitBreaker(handleAll, { halfOpenAfter: OPEN_MS, breaker: new ConsecutiveBreaker(5) });
    p.onStateChange((state) => transition('cockatiel', cockatielStates[state] ?? String(state)));
    return p;
  });
  const flakyOpossum = Array.from({ length: BREAKERS }, () => {
    const o = new Opossum((fn: () => Promise<unknown>) => fn(), {
      timeout: false,
      resetTimeout: OPEN_MS,
      volumeThreshold: 5,
    });
    for (const [event, to] of [
      ['open', 'open'],
      ['halfOpen', 'half-open'],
      ['close', 'closed'],
    ] as const) {
      o.on(event, () => transition('opossum', to));
    }
    cleanups.push(() => o.shutdown());
    return o;
  });
  const start = performance.now();
  await Promise.all(
    Array.from({ length: BREAKERS }, (_, i) => [
      exercise('circuitry', (fn) => factory.breakerFor('flaky', { tenantId: i }).execute(fn), CYCLES),
      exercise('cockatiel', (fn) => flakyCockatiel[i]!.execute(fn), CYCLES),
      exercise('opossum', (fn) => flakyOpossum[i]!.fire(fn), CYCLES),
    ]).flat(),
  );
  const warmUpMs = performance.now() - start;

  const breaker = factory.breakerFor('api');
  const policy = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
  const opossum = new Opossum(noop, { timeout: false, resetTimeout: 30_000 });
  cleanups.push(() => opossum.shutdown());
  measurements.warmClosed = await interleaved(OPS, {
    bare: async () => {
      for (let i = 0; i < OPS; i++) await noop();
    },
    circuitry: async () => {
      for (let i = 0; i < OPS; i++) await breaker.execute(noop);
    },
    cockatiel: async () => {
      for (let i = 0; i < OPS; i++) await policy.execute(noop);
    },
    opossum: async () => {
      for (let i = 0; i < OPS; i++) await opossum.fire();
    },
  });
  measurements.warmInFlight = await interleaved(OPS, {
    bare: concurrently(async (more) => {
      while (more()) await tick();
    }),
    circuitry: concurrently(async (more) => {
      while (more()) await breaker.execute(tick);
    }),
    cockatiel: concurrently(async (more) => {
      while (more()) await policy.execute(tick);
    }),
    opossum: concurrently(async (more) => {
      while (more()) await opossum.fire();
    }),
  });
  measurements.warmUp = { ms: warmUpMs, breakers: BREAKERS, cycles: CYCLES, ...warmCounts };
  if (!fresh) return;

  // A new breaker every round (and for the warm-up run): its creation and first calls are timed.
  let n = 0;
  const factories: { close(): Promise<unknown> }[] = [];
  const newFactory = (): Circuitry.BreakerFactory => {
    const f = new BreakerFactory();
    factories.push(f);
    return f;
  };
  const newPolicy = (): ReturnType<typeof circuitBreaker> =>
    circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
  cleanups.push(() => Promise.all(factories.map((f) => f.close())));
  // Beside them, in the same rounds: the breaker and policy of the warm-paths measurement, the same
  // every round (what a new breaker changes), and a bare loop.
  measurements.freshClosed = await interleaved(OPS, {
    bare: async () => {
      for (let i = 0; i < OPS; i++) await noop();
    },
    'circuitry, same breaker': async () => {
      for (let i = 0; i < OPS; i++) await breaker.execute(noop);
    },
    'cockatiel, same policy': async () => {
      for (let i = 0; i < OPS; i++) await policy.execute(noop);
    },
    'circuitry, new name': async () => {
      const b = factory.breakerFor(`fresh-${n++}`);
      for (let i = 0; i < OPS; i++) await b.execute(noop);
    },
    'circuitry, new factory': async () => {
      const b = newFactory().breakerFor('api');
      for (let i = 0; i < OPS; i++) await b.execute(noop);
    },
    cockatiel: async () => {
      const p = newPolicy();
      for (let i = 0; i < OPS; i++) await p.execute(noop);
    },
  });
  measurements.freshInFlight = await interleaved(OPS, {
    bare: concurrently(async (more) => {
      while (more()) await tick();
    }),
    'circuitry, same breaker': concurrently(async (more) => {
      while (more()) await breaker.execute(tick);
    }),
    'cockatiel, same policy': concurrently(async (more) => {
      while (more()) await policy.execute(tick);
    }),
    'circuitry, new name': async () => {
      const b = factory.breakerFor(`fresh-${n++}`);
      await concurrently(async (more) => {
        while (more()) await b.execute(tick);
      })();
    },
    'circuitry, new factory': async () => {
      const b = newFactory().breakerFor('api');
      await concurrently(async (more) => {
        while (more()) await b.execute(tick);
      })();
    },
    cockatiel: async () => {
      const p = newPolicy();
      await concurrently(async (more) => {
        while (more()) await p.execute(tick);
      })();
    },
  });
  cleanups.push(() => factory.close());
}

async function tenants(count: number, sized: boolean): Promise<void> {
  const { BreakerFactory } = await loadCircuitry();
  const { ConsecutiveBreaker, circuitBreaker, handleAll } = await import('cockatiel');
  const ids = Array.from({ length: count }, (_, i) => `tenant-${i}`);
  // One factory per process: maxBreakers as many as the tenants, or the default (10,000).
  const factory = sized ? new BreakerFactory({ maxBreakers: count }) : new BreakerFactory();
  cleanups.push(() => factory.close());
  // Every tenant once before timing, when the factory can hold them all: the rounds measure
  // tenants that have a breaker. Past maxBreakers, round-robin finds none held whatever ran
  // before (the LRU dropped each tenant's breaker since its last turn): the untimed first run of
  // the rounds fills the factory.
  const holdsAll = count <= (sized ? count : 10_000);
  if (holdsAll) for (const tenantId of ids) await factory.breakerFor('api', { tenantId }).execute(noop);
  // The plain closed path beside it, from a factory of its own (in `factory` it would take a slot).
  const oneFactory = new BreakerFactory();
  cleanups.push(() => oneFactory.close());
  const one = oneFactory.breakerFor('api');
  const policy = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
  let next = 0;
  const runs: Record<string, Run> = {
    bare: async () => {
      for (let i = 0; i < OPS; i++) await noop();
    },
    cockatiel: async () => {
      for (let i = 0; i < OPS; i++) await policy.execute(noop);
    },
    'circuitry, one breaker': async () => {
      for (let i = 0; i < OPS; i++) await one.execute(noop);
    },
    'circuitry, breakerFor': async () => {
      for (let i = 0; i < OPS; i++) {
        await factory.breakerFor('api', { tenantId: ids[next]! }).execute(noop);
        if (++next === count) next = 0;
      }
    },
  };
  if (holdsAll) {
    // Where the time goes: the same breakers called round-robin without looking them up.
    const held = ids.map((tenantId) => factory.breakerFor('api', { tenantId }));
    let h = 0;
    runs['circuitry, held breakers'] = async () => {
      for (let i = 0; i < OPS; i++) {
        await held[h]!.execute(noop);
        if (++h === count) h = 0;
      }
    };
  }
  if (count <= 10_000) {
    // For comparison only: the same pattern with cockatiel, a Map of one policy per tenant.
    const policies = new Map<string, ReturnType<typeof circuitBreaker>>();
    let c = 0;
    runs['cockatiel, a policy per tenant (Map)'] = async () => {
      for (let i = 0; i < OPS; i++) {
        const id = ids[c]!;
        let p = policies.get(id);
        if (p === undefined) {
          p = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
          policies.set(id, p);
        }
        await p.execute(noop);
        if (++c === count) c = 0;
      }
    };
  }
  measurements.tenants = await interleaved(OPS, runs);
  measurements.held = { breakers: factory.size };
}

if (mode === 'alone-circuitry') await alone('circuitry');
else if (mode === 'alone-cockatiel') await alone('cockatiel');
else if (mode === 'together') await together();
else if (mode === 'warm') await warm(false);
else if (mode === 'warm+fresh') await warm(true);
else if (/^tenants-\d+-(sized|default)$/.test(mode)) {
  const [, count, kind] = mode.split('-');
  await tenants(Number(count), kind === 'sized');
} else throw new Error(`unknown mode ${mode}`);

for (const cleanup of cleanups) await cleanup();
process.stdout.write(`${JSON.stringify({ mode, rounds: ROUNDS, ops: OPS, measurements })}\n`);
process.exit(0);
