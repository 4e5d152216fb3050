/**
 * The closed path and 1,000 calls in flight in the conditions users run in (issue 26), each in a
 * child process of its own (bench/conditions-worker.ts) so one condition's leftovers (V8 feedback,
 * optimised code, loaded libraries) do not reach another:
 * - every path warmed first (failures, open, rejections, half-open, recovery), then a fresh closed
 *   breaker; and a new breaker (new name, new factory) every round after that;
 * - each library alone in its process, and circuitry, cockatiel and opossum in one process;
 * - `breakerFor(base, { tenantId }).execute` round-robin over 1,000 and 100,000 tenants (20,000
 *   with --quick).
 * Verdicts are the compiled library's (what users run); src through tsx is shown beside them in a
 * full run.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';

import { compiledIndex, run } from './compiled.js';
import { quick, ratio, results, targets } from './harness.js';

type Measurements = Record<string, Record<string, number>>;

const WORKER = fileURLToPath(new URL('./conditions-worker.ts', import.meta.url));
const SRC = pathToFileURL(fileURLToPath(new URL('../src/index.ts', import.meta.url))).href;
const COMPILED = 'circuitry (compiled)';
const TSX = 'circuitry (src through tsx)';

async function worker(mode: string, library: string): Promise<Measurements> {
  const args = ['--expose-gc', '--import', 'tsx', WORKER, mode, library];
  if (quick) args.push('--quick');
  const stdout = await run(args);
  return (JSON.parse(stdout.trim().split('\n').at(-1)!) as { measurements: Measurements }).measurements;
}

/** The compiled library's measurements, and (in a full run, when `tsx`) src through tsx's. */
async function both(mode: string, tsx = true): Promise<{ compiled: Measurements; tsx: Measurements | null }> {
  const compiled = await worker(mode, await compiledIndex());
  return { compiled, tsx: quick || !tsx ? null : await worker(mode, SRC) };
}

const ns = (value: number): string => `${Math.round(value).toLocaleString('en-US')} ns`;
const perSecond = (nsPerOp: number): number => Math.round(1e9 / nsPerOp);
const callsPerSecond = (nsPerOp: number): string => `${perSecond(nsPerOp).toLocaleString('en-US')} calls/s`;
const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Pushes the rows of one closed-path or in-flight measurement (ns/op, or calls/s when `throughput`). */
function rows(
  c: string,
  m: Record<string, number>,
  names: Record<string, string>,
  throughput: boolean,
  reference = 'cockatiel',
): void {
  for (const [key, library] of Object.entries(names)) {
    const value = m[key];
    if (value === undefined) continue;
    const versus =
      key === reference || key.startsWith('bare') || m[reference] === undefined
        ? ''
        : throughput
          ? `${ratio(m[reference], value)} ${reference}'s throughput`
          : `${ratio(value, m[reference])} ${reference}`;
    results.push({
      case: c,
      library,
      value: throughput ? perSecond(value) : value,
      unit: throughput ? 'calls/s' : 'ns/op',
      note: [
        versus,
        m.bare !== undefined && !key.startsWith('bare') && !throughput ? `${ratio(value, m.bare)} bare` : '',
      ]
        .filter((s) => s !== '')
        .join('; '),
    });
  }
}

/** A closed-path target: circuitry's ns over cockatiel's, ≤ `limit`. */
function closedTarget(
  c: string,
  limit: number,
  circuitry: number,
  cockatiel: number,
  tsx: string | null,
  note?: string,
): void {
  targets.push({
    case: c,
    target: `≤ ${limit.toFixed(1)}x`,
    measured: `${ratio(circuitry, cockatiel)} compiled (${ns(circuitry)} vs ${ns(cockatiel)})${tsx === null ? '' : `; src through tsx ${tsx}`}`,
    verdict: circuitry / cockatiel <= limit ? 'met' : 'missed',
    ...(note === undefined ? {} : { note }),
  });
}

/** A 1,000-in-flight target: circuitry's throughput over cockatiel's, ≥ 1.3x. */
function inFlightTarget(c: string, circuitry: number, cockatiel: number, tsx: string | null): void {
  targets.push({
    case: c,
    target: '≥ 1.3x',
    measured: `${ratio(cockatiel, circuitry)} compiled (${callsPerSecond(circuitry)} vs ${callsPerSecond(cockatiel)})${tsx === null ? '' : `; src through tsx ${tsx}`}`,
    verdict: cockatiel / circuitry >= 1.3 ? 'met' : 'missed',
  });
}

function skip(cases: readonly string[], error: unknown): void {
  console.warn(`a conditions worker failed: ${String(error)}`);
  for (const c of cases)
    targets.push({ case: c, target: '', measured: '', verdict: 'skipped', note: String(error) });
}

// ---- warm all paths, then the closed path; a new breaker every round -----------------------------
const WARM_TARGETS = [
  'closed execute after every path ran (warm all paths) vs cockatiel',
  '1,000 in flight after every path ran, throughput vs cockatiel',
] as const;
const FRESH_TARGETS = [
  'closed execute, a new breaker name every round (after failures) vs cockatiel',
  'closed execute, a new factory every round (after failures) vs cockatiel',
  '1,000 in flight, a new breaker name every round, throughput vs cockatiel',
  '1,000 in flight, a new factory every round, throughput vs cockatiel',
] as const;

export async function warmPathsCases(warm: boolean, fresh: boolean): Promise<void> {
  if (!warm && !fresh) return;
  let m: { compiled: Measurements; tsx: Measurements | null };
  try {
    m = await both(fresh ? 'warm+fresh' : 'warm');
  } catch (error) {
    skip([...(warm ? WARM_TARGETS : []), ...(fresh ? FRESH_TARGETS : [])], error);
    return;
  }
  const { compiled: c, tsx: t } = m;
  const w = c.warmUp!;
  const did = (library: string): string =>
    `${library} ${w[`${library} to open`] ?? 0} opens, ${w[`${library} to half-open`] ?? 0} half-opens, ${w[`${library} to closed`] ?? 0} closes, ${w[`${library} rejected`] ?? 0} calls rejected, ${w[`${library} failed`] ?? 0} failed`;
  const warmUp = `warm-up ${(w.ms! / 1_000).toFixed(1)} s, ${w.breakers} breakers per library, each ${w.cycles === 1 ? 'once' : `${w.cycles} times`} through failures, a trip, rejections, a failing probe and a succeeding one: ${['circuitry', 'cockatiel', 'opossum'].map(did).join('; ')}`;
  if (warm) {
    const closed = c.warmClosed!;
    const inFlight = c.warmInFlight!;
    const names = { bare: 'bare', circuitry: COMPILED, cockatiel: 'cockatiel', opossum: 'opossum' };
    rows('closed path after every path ran (warm all paths), a fresh closed breaker', closed, names, false);
    rows(
      '1,000 in flight after every path ran (warm all paths), a fresh closed breaker',
      inFlight,
      names,
      true,
    );
    if (t !== null) {
      rows(
        'closed path after every path ran (warm all paths), a fresh closed breaker',
        t.warmClosed!,
        { circuitry: TSX },
        false,
      );
      rows(
        '1,000 in flight after every path ran (warm all paths), a fresh closed breaker',
        t.warmInFlight!,
        { circuitry: TSX },
        true,
      );
    }
    closedTarget(
      WARM_TARGETS[0],
      0.8,
      closed.circuitry!,
      closed.cockatiel!,
      t === null ? null : ratio(t.warmClosed!.circuitry!, t.warmClosed!.cockatiel!),
      warmUp,
    );
    inFlightTarget(
      WARM_TARGETS[1],
      inFlight.circuitry!,
      inFlight.cockatiel!,
      t === null ? null : ratio(t.warmInFlight!.cockatiel!, t.warmInFlight!.circuitry!),
    );
  }
  if (fresh) {
    const closed = c.freshClosed!;
    const inFlight = c.freshInFlight!;
    const names = {
      bare: 'bare',
      'circuitry, same breaker': `${COMPILED}, the same breaker every round (warm-paths')`,
      'cockatiel, same policy': "cockatiel, the same policy every round (warm-paths')",
      'circuitry, new name': `${COMPILED}, breakerFor(a new name) each round`,
      'circuitry, new factory': `${COMPILED}, a new BreakerFactory each round`,
      cockatiel: 'cockatiel, a new policy each round',
    };
    rows('closed path, a new breaker every round (after failures ran in the process)', closed, names, false);
    rows(
      '1,000 in flight, a new breaker every round (after failures ran in the process)',
      inFlight,
      names,
      true,
    );
    const tsxOf = (key: string, throughput: boolean): string | null => {
      if (t === null) return null;
      const x = throughput ? t.freshInFlight! : t.freshClosed!;
      return throughput ? ratio(x.cockatiel!, x[key]!) : ratio(x[key]!, x.cockatiel!);
    };
    closedTarget(
      FRESH_TARGETS[0],
      0.8,
      closed['circuitry, new name']!,
      closed.cockatiel!,
      tsxOf('circuitry, new name', false),
      'the closed-path target, in this condition; in the warm-paths process, after its warm-up and measurements',
    );
    closedTarget(
      FRESH_TARGETS[1],
      0.8,
      closed['circuitry, new factory']!,
      closed.cockatiel!,
      tsxOf('circuitry, new factory', false),
      'the closed-path target, in this condition; in the warm-paths process, after its warm-up and measurements',
    );
    inFlightTarget(
      FRESH_TARGETS[2],
      inFlight['circuitry, new name']!,
      inFlight.cockatiel!,
      tsxOf('circuitry, new name', true),
    );
    inFlightTarget(
      FRESH_TARGETS[3],
      inFlight['circuitry, new factory']!,
      inFlight.cockatiel!,
      tsxOf('circuitry, new factory', true),
    );
  }
}

// ---- each library alone, and several in one process --------------------------------------------
const LIBRARY_TARGETS = [
  'closed execute, each library alone in its process, vs cockatiel',
  '1,000 in flight, each library alone in its process, throughput vs cockatiel',
  'closed execute, circuitry, cockatiel and opossum in one process, vs cockatiel',
  '1,000 in flight, circuitry, cockatiel and opossum in one process, throughput vs cockatiel',
] as const;

export async function librariesCases(): Promise<void> {
  // Alone: a process per library, alternated (3 pairs in a full run, 1 with --quick), each
  // library's figure the median of its processes' medians.
  const pairs = quick ? 1 : 3;
  const alone: Record<'circuitry' | 'cockatiel', Measurements[]> = { circuitry: [], cockatiel: [] };
  let together: { compiled: Measurements; tsx: Measurements | null };
  let aloneTsx: Measurements | null = null;
  try {
    const compiled = await compiledIndex();
    for (let i = 0; i < pairs; i++) {
      alone.circuitry.push(await worker('alone-circuitry', compiled));
      alone.cockatiel.push(await worker('alone-cockatiel', compiled));
    }
    if (!quick) aloneTsx = await worker('alone-circuitry', SRC);
    together = await both('together');
  } catch (error) {
    skip(LIBRARY_TARGETS, error);
    return;
  }
  const pick = (ms: Measurements[], m: string, key: string): number => median(ms.map((x) => x[m]![key]!));
  const aloneOf = (m: 'closed' | 'inFlight'): Record<string, number> => ({
    'bare, circuitry': pick(alone.circuitry, m, 'bare'),
    'bare, cockatiel': pick(alone.cockatiel, m, 'bare'),
    circuitry: pick(alone.circuitry, m, 'circuitry'),
    cockatiel: pick(alone.cockatiel, m, 'cockatiel'),
  });
  const aloneNames = {
    'bare, circuitry': "bare (circuitry's process)",
    'bare, cockatiel': "bare (cockatiel's process)",
    circuitry: COMPILED,
    cockatiel: 'cockatiel',
  };
  const closedAlone = aloneOf('closed');
  const inFlightAlone = aloneOf('inFlight');
  const processes = `${pairs} process${pairs === 1 ? '' : 'es'} per library`;
  rows(`closed path, each library alone in its process (${processes})`, closedAlone, aloneNames, false);
  rows(`1,000 in flight, each library alone in its process (${processes})`, inFlightAlone, aloneNames, true);
  const names = { bare: 'bare', circuitry: COMPILED, cockatiel: 'cockatiel', opossum: 'opossum' };
  const t = together.tsx;
  const c = together.compiled;
  rows('closed path, circuitry, cockatiel and opossum in one process', c.closed!, names, false);
  rows('1,000 in flight, circuitry, cockatiel and opossum in one process', c.inFlight!, names, true);
  if (t !== null) {
    rows(
      'closed path, circuitry, cockatiel and opossum in one process',
      t.closed!,
      { circuitry: TSX },
      false,
    );
    rows(
      '1,000 in flight, circuitry, cockatiel and opossum in one process',
      t.inFlight!,
      { circuitry: TSX },
      true,
    );
  }
  closedTarget(
    LIBRARY_TARGETS[0],
    0.8,
    closedAlone.circuitry!,
    closedAlone.cockatiel!,
    aloneTsx === null ? null : ratio(aloneTsx.closed!.circuitry!, closedAlone.cockatiel!),
    'the closed-path target, in this condition; the two libraries measured in different processes, one after the other',
  );
  inFlightTarget(
    LIBRARY_TARGETS[1],
    inFlightAlone.circuitry!,
    inFlightAlone.cockatiel!,
    aloneTsx === null ? null : ratio(inFlightAlone.cockatiel!, aloneTsx.inFlight!.circuitry!),
  );
  closedTarget(
    LIBRARY_TARGETS[2],
    0.8,
    c.closed!.circuitry!,
    c.closed!.cockatiel!,
    t === null ? null : ratio(t.closed!.circuitry!, t.closed!.cockatiel!),
    'the closed-path target, in this condition',
  );
  inFlightTarget(
    LIBRARY_TARGETS[3],
    c.inFlight!.circuitry!,
    c.inFlight!.cockatiel!,
    t === null ? null : ratio(t.inFlight!.cockatiel!, t.inFlight!.circuitry!),
  );
}

// ---- breakerFor + execute over N tenants --------------------------------------------------------
/** The many-tenant count: 100,000, or 20,000 with --quick (still past the default maxBreakers). */
const MANY = quick ? 20_000 : 100_000;
const tenantTarget = (count: number, sized: boolean): string =>
  `breakerFor + execute over ${count.toLocaleString('en-US')} tenants (${sized ? `maxBreakers ${count.toLocaleString('en-US')}` : 'default maxBreakers 10,000'}) vs cockatiel single execute`;

export async function tenantsCases(): Promise<void> {
  for (const [count, sized] of [
    [1_000, true],
    [1_000, false],
    [MANY, true],
    [MANY, false],
  ] as const) {
    const target = tenantTarget(count, sized);
    let m: { compiled: Measurements; tsx: Measurements | null };
    try {
      // src through tsx beside the compiled library where there is a target (1,000 tenants).
      m = await both(`tenants-${count}-${sized ? 'sized' : 'default'}`, count === 1_000);
    } catch (error) {
      skip([target], error);
      continue;
    }
    const n = count.toLocaleString('en-US');
    const factory = sized ? `maxBreakers ${n}` : 'default maxBreakers (10,000)';
    const x = m.compiled.tenants!;
    const held = m.compiled.held!.breakers!;
    const c = `breakerFor('api', { tenantId }).execute(noop), round-robin over ${n} tenants, factory with ${factory} (a process of its own)`;
    rows(
      c,
      x,
      {
        bare: 'bare',
        cockatiel: 'cockatiel, one policy',
        'cockatiel, a policy per tenant (Map)': 'cockatiel, a policy per tenant (Map)',
        'circuitry, one breaker': `${COMPILED}, one breaker (no breakerFor)`,
        'circuitry, breakerFor': `${COMPILED}, breakerFor + execute`,
        'circuitry, held breakers': `${COMPILED}, execute on the same breakers, held in an array (no breakerFor)`,
      },
      false,
    );
    const t = m.tsx?.tenants;
    if (t !== undefined) rows(c, t, { 'circuitry, breakerFor': `${TSX}, breakerFor + execute` }, false);
    const tsx = t === undefined ? null : ratio(t['circuitry, breakerFor']!, t.cockatiel!);
    const note =
      held < count
        ? `the factory holds ${held.toLocaleString('en-US')} breakers: round-robin over more tenants than that, every call creates a breaker (the store still has the tenant's record)`
        : `the factory holds every tenant's breaker (${held.toLocaleString('en-US')})`;
    const circuitry = x['circuitry, breakerFor']!;
    if (count === 1_000) closedTarget(target, 1.0, circuitry, x.cockatiel!, tsx, note);
    else {
      targets.push({
        case: target,
        target: 'report',
        measured: `${ratio(circuitry, x.cockatiel!)} compiled (${ns(circuitry)} vs ${ns(x.cockatiel!)})${tsx === null ? '' : `; src through tsx ${tsx}`}`,
        verdict: 'report',
        note,
      });
    }
  }
}
