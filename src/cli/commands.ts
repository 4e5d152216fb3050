/**
 * The operator commands of `npx circuitry`: list, status, the overrides (open, close, disable,
 * metrics-only, clear), reset and watch. Each reads its flags, opens the store with every call
 * bounded, and ends with exit code 0, 1 (not found, store unreachable) or 2 (bad usage).
 */
import { MAX_REASON_LENGTH } from '../core/reducer.js';
import type { ForceOptions, Override } from '../core/types.js';
import type { BreakerRow } from './fleet.js';
import {
  DEFAULT_POLICY,
  STATE_FILTERS,
  byUrgency,
  glob,
  matchesState,
  examineBreaker,
  isCorrupt,
  readBreaker,
  scanFleetReport,
  toRow,
} from './fleet.js';
import {
  formatCorrupt,
  formatLine,
  formatStatus,
  formatSummary,
  formatTable,
  formatTransition,
  printable,
} from './format.js';
import type { StoreConnection, StoreFlags } from './store-connection.js';
import { STORE_HELP, STORE_OPTIONS, bounded, checkStoreFlags, openStore } from './store-connection.js';
import { watchTransitions } from './transitions.js';
import { CliError, parse } from './usage.js';

export interface Command {
  readonly summary: string;
  readonly help: string;
  run(args: string[]): Promise<void>;
}

const out = (text: string): void => void process.stdout.write(`${text}\n`);
const err = (text: string): void => void process.stderr.write(`${text}\n`);

/** An error's message, with its causes' (a store error wraps the driver's). */
function describeError(error: unknown): string {
  const parts: string[] = [];
  for (let e = error; e !== undefined && e !== null && parts.length < 4; e = (e as Error).cause) {
    const message = e instanceof Error ? e.message || e.name : JSON.stringify(e);
    if (!parts.includes(message)) parts.push(message);
  }
  return parts.join(': ');
}

/** Opens the store, runs `work`, closes the store; a failed store call is exit 1. */
export async function withStore<T>(
  flags: StoreFlags,
  work: (connection: StoreConnection) => Promise<T>,
  options: { reconnect?: boolean } = {},
): Promise<T> {
  const connection = await openStore(flags, options);
  try {
    return await work(connection);
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(1, `${connection.description}: ${describeError(error)}`);
  } finally {
    await connection.close();
  }
}

/** `--json` fields naming what was read: the store, and the Redis key prefix (null for others). */
function whereFields(connection: StoreConnection): { store: string; prefix: string | null } {
  return { store: connection.where.store, prefix: connection.where.prefix };
}

/** The first line of human output: what was read. */
function formatWhere(connection: StoreConnection): string {
  const { store, prefix } = connection.where;
  return `store: ${store}${prefix === null ? '' : `, prefix ${JSON.stringify(prefix)}`}`;
}

/** Prefixes near the given one that hold breakers, for a command that found nothing; [] when none. */
async function nearPrefixes(connection: StoreConnection): Promise<string[]> {
  if (connection.nearPrefixes === undefined) return [];
  return connection.nearPrefixes().catch(() => []);
}

function formatNearHint(connection: StoreConnection, near: readonly string[]): string {
  return `hint: nothing under prefix ${JSON.stringify(connection.where.prefix)}, but breakers exist under ${near
    .map((p) => JSON.stringify(p))
    .join(', ')} (--prefix ${near[0]})`;
}

function notFoundMessage(name: string): string {
  return `no breaker named ${JSON.stringify(name)} in the store: either it never failed (a closed breaker that never failed keeps no record, so it is closed) or the name is wrong (\`circuitry list --match\` shows the names there are)`;
}

function oneName(positionals: string[], command: string): string {
  if (positionals.length !== 1 || positionals[0] === '') {
    throw new CliError(
      2,
      `${command} takes one breaker name, got ${positionals.length === 0 ? 'none' : positionals.map((p) => JSON.stringify(p)).join(' ')}`,
    );
  }
  return positionals[0]!;
}

const LIST_HELP = `circuitry list: every breaker in the store, with its state, override, counts, failure
rate, retry-after and generation. Open breakers first, then half-open, then by name.

Usage: npx circuitry list [--state S] [--match GLOB] [--json] <store>

  --state S          only breakers in state S: closed, open, half-open, or with override
                     forced-open, forced-closed or metrics-only
  --match GLOB       only names matching GLOB (* any characters, ? one), e.g. 'charge-card/*'
  --concurrency N    breakers read at once (default 64)
  --json             a JSON array of { name, state, override, overrideReason, overrideUntil,
                     circuitState, counts, retryAfterMs, openUntil, generation, activeProbes,
                     activeSlots, throttle, reopens, readAt }
  --help             this text

${STORE_HELP}`;

const list: Command = {
  summary: 'every breaker with its state, override, counts and retry-after',
  help: LIST_HELP,
  async run(args) {
    const { values } = parse(args, {
      ...STORE_OPTIONS,
      state: { type: 'string' },
      match: { type: 'string' },
      concurrency: { type: 'string' },
      json: { type: 'boolean' },
    });
    const state = values.state;
    if (state !== undefined && !(STATE_FILTERS as readonly string[]).includes(state)) {
      throw new CliError(2, `--state must be one of ${STATE_FILTERS.join(', ')}, got ${state}`);
    }
    const concurrency = values.concurrency === undefined ? 64 : Number(values.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1_000) {
      throw new CliError(2, `--concurrency must be an integer from 1 to 1000, got ${values.concurrency}`);
    }
    const flags = checkStoreFlags(values);
    await withStore(flags, async (connection) => {
      const { rows, corrupt } = await scanFleetReport(connection.store, {
        match: glob(values.match),
        concurrency,
        timeoutMs: connection.callTimeoutMs,
      });
      const near = rows.length === 0 && corrupt.length === 0 ? await nearPrefixes(connection) : [];
      const shown = (state === undefined ? rows : rows.filter((r) => matchesState(r, state))).sort(byUrgency);
      const unreadable = corrupt.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      if (values.json) {
        out(
          JSON.stringify({
            ...whereFields(connection),
            breakers: shown,
            corrupt: unreadable,
            ...(near.length > 0 ? { nearPrefixes: near } : {}),
          }),
        );
      } else {
        out(formatWhere(connection));
        out(shown.length === 0 ? formatSummary(shown) : `${formatTable(shown)}\n\n${formatSummary(shown)}`);
        if (unreadable.length > 0) out(`\n${formatCorrupt(unreadable)}`);
      }
      if (near.length > 0) err(formatNearHint(connection, near));
    });
  },
};

const STATUS_HELP = `circuitry status: one breaker's state, override, counts, retry-after and generation.

Usage: npx circuitry status NAME [--json] <store>

  --json             a JSON object { name, state, override, overrideReason, overrideUntil,
                     circuitState, counts, retryAfterMs, openUntil, generation, activeProbes,
                     activeSlots, throttle, reopens, readAt }
  --help             this text

A breaker the store holds nothing for (one that never failed) is "not found": exit code 1.

${STORE_HELP}`;

const status: Command = {
  summary: "one breaker's state, override, counts and retry-after",
  help: STATUS_HELP,
  async run(args) {
    const { values, positionals } = parse(args, { ...STORE_OPTIONS, json: { type: 'boolean' } }, true);
    const name = oneName(positionals, 'status');
    const flags = checkStoreFlags(values);
    await withStore(flags, async (connection) => {
      const row = await examineBreaker(connection.store, name, connection.callTimeoutMs);
      if (row === null) {
        const near = await nearPrefixes(connection);
        if (values.json) out(JSON.stringify({ name, found: false, ...whereFields(connection) }));
        else out(formatWhere(connection));
        if (near.length > 0) err(formatNearHint(connection, near));
        throw new CliError(1, notFoundMessage(name));
      }
      if (isCorrupt(row)) {
        if (values.json) out(JSON.stringify({ ...row, ...whereFields(connection) }));
        else out(`${formatWhere(connection)}\n${formatCorrupt([row])}`);
        throw new CliError(1, `the record of ${JSON.stringify(name)} is not readable; \`reset\` replaces it`);
      }
      out(
        values.json
          ? JSON.stringify({ ...row, ...whereFields(connection) })
          : `${formatWhere(connection)}\n${formatStatus(row)}`,
      );
    });
  },
};

/** A duration such as `500ms`, `30s`, `5m`, `2h` (a bare number is seconds), in ms; exit 2 otherwise. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
  const ms = match === null ? NaN : Number(match[1]) * unit[(match[2] ?? 's') as keyof typeof unit];
  if (!Number.isFinite(ms) || ms < 1 || ms > 30 * 24 * 3_600_000) {
    throw new CliError(
      2,
      `${flag}: expected a duration such as 500ms, 30s, 5m or 2h (at most 30 days), got ${JSON.stringify(text)}`,
    );
  }
  return Math.ceil(ms);
}

interface ActionSpec {
  readonly override: Override | null;
  readonly summary: string;
  readonly what: string;
}

const ACTIONS: Record<string, ActionSpec> = {
  open: {
    override: 'forced-open',
    summary: 'force a breaker open (override forced-open): every call is rejected',
    what: 'Sets the override forced-open: every call is rejected, until `clear` (or for DURATION).',
  },
  close: {
    override: 'forced-closed',
    summary: 'force a breaker closed (override forced-closed), the same as disable',
    what: 'Sets the override forced-closed (the same as `disable`): every call is admitted and\nnothing is counted, until `clear`.',
  },
  disable: {
    override: 'forced-closed',
    summary: 'disable a breaker (override forced-closed): admits every call, counts nothing',
    what: 'Sets the override forced-closed: every call is admitted and nothing is counted, until\n`clear`.',
  },
  'metrics-only': {
    override: 'metrics-only',
    summary: 'count and transition but never reject (override metrics-only)',
    what: 'Sets the override metrics-only: the breaker counts, transitions and emits events but\nnever rejects a call, until `clear`. The safe way to roll a breaker out.',
  },
  clear: {
    override: null,
    summary: 'drop the override: the computed state rules again',
    what: 'Drops the override: the computed state (closed, open, half-open) rules again.',
  },
};

export interface ActionResult {
  readonly name: string;
  readonly action: string;
  readonly before: BreakerRow | null;
  readonly after: BreakerRow;
}

/** Sets or clears an override, reading the breaker first so both states can be shown. */
export async function applyOverride(
  connection: StoreConnection,
  name: string,
  action: string,
  override: Override | null,
  options?: ForceOptions,
): Promise<ActionResult> {
  const { store, callTimeoutMs } = connection;
  const before = await readBreaker(store, name, callTimeoutMs);
  if (before === null && override === null) {
    throw new CliError(1, notFoundMessage(name));
  }
  const result = await bounded(
    options === undefined
      ? store.force(name, DEFAULT_POLICY, override)
      : store.force(name, DEFAULT_POLICY, override, options),
    callTimeoutMs,
    `force ${JSON.stringify(name)}`,
  );
  return { name, action, before, after: toRow(name, result.snapshot) };
}

/**
 * Starts a breaker afresh with `Store.reset`: closed, window counts, consecutive failures, backoff,
 * probe leases and probe successes forgotten, a new generation (results of calls admitted before
 * are ignored), the override kept; an open-to-closed change is pushed to every process.
 *
 * A store without `reset` (one written before it existed) gets what its other operations can do:
 * change the override and set it back. That starts two new generations and drops probe leases and
 * probe successes, but the counts and the computed state stay, and for a moment between the two
 * writes the intermediate override applies (forced-closed, or metrics-only when the breaker was
 * forced-closed). `resetKept` then tells what stayed.
 */
export async function resetBreaker(connection: StoreConnection, name: string): Promise<ActionResult> {
  const { store, callTimeoutMs } = connection;
  const found = await examineBreaker(store, name, callTimeoutMs);
  if (found === null) throw new CliError(1, notFoundMessage(name));
  // An unreadable record is what reset is for: the store replaces it with a fresh closed one.
  const before = isCorrupt(found) ? null : found;
  if (store.reset !== undefined) {
    const result = await bounded(
      store.reset(name, DEFAULT_POLICY),
      callTimeoutMs,
      `reset ${JSON.stringify(name)}`,
    );
    return { name, action: 'reset', before, after: toRow(name, result.snapshot) };
  }
  const override = before?.override ?? null;
  const through: Override = override === 'forced-closed' ? 'metrics-only' : 'forced-closed';
  await bounded(store.force(name, DEFAULT_POLICY, through), callTimeoutMs, `force ${JSON.stringify(name)}`);
  const result = await bounded(
    store.force(name, DEFAULT_POLICY, override),
    callTimeoutMs,
    `force ${JSON.stringify(name)}`,
  );
  return { name, action: 'reset', before, after: toRow(name, result.snapshot) };
}

/** Whether a reset left counts or an open state behind (only a store without `reset` does). */
export function resetKept(result: ActionResult): boolean {
  const { after } = result;
  return (
    after.counts.total + after.counts.slow + after.counts.ignored > 0 ||
    after.counts.consecutiveFailures > 0 ||
    after.state !== 'closed'
  );
}

function printAction(
  result: ActionResult,
  json: boolean | undefined,
  connection: StoreConnection,
  extra: Record<string, unknown> = {},
): void {
  if (json) {
    out(JSON.stringify({ ...result, ...extra, ...whereFields(connection) }));
    return;
  }
  out(formatWhere(connection));
  out(`${printable(result.name)}: ${result.action}`);
  out(`  before  ${formatLine(result.before)}`);
  out(`  after   ${formatLine(result.after)}`);
}

function actionCommand(action: string, spec: ActionSpec): Command {
  const help = `circuitry ${action}: ${spec.summary}.

Usage: npx circuitry ${action} NAME ${spec.override === null ? '' : '[--for DURATION] [--reason TEXT] '}[--json] <store>

${spec.what}
Prints the state before and after. ${spec.override === null ? 'A breaker the store holds nothing for is "not found" (exit code 1).' : 'A breaker the store holds nothing for (one that never failed) gets a record.'}
${
  spec.override === null
    ? ''
    : `
  --for DURATION     the override lapses after DURATION (500ms, 30s, 5m, 2h; a bare number is
                     seconds)${spec.override === 'forced-open' ? ': then the breaker is half-open, and probes decide' : ': then the computed state rules again'}
  --reason TEXT      why, shown by status, list and the dashboard (at most 200 characters)`
}
  --json             a JSON object { name, action, before, after }, before null when the
                     store held nothing; before and after as in \`status --json\`
  --help             this text

${STORE_HELP}`;
  return {
    summary: spec.summary,
    help,
    async run(args) {
      // clear has nothing to time: --for and --reason are unknown options there (exit 2).
      const { values, positionals } =
        spec.override === null
          ? parse(args, { ...STORE_OPTIONS, json: { type: 'boolean' } }, true)
          : parse(
              args,
              {
                ...STORE_OPTIONS,
                for: { type: 'string' },
                reason: { type: 'string' },
                json: { type: 'boolean' },
              },
              true,
            );
      const name = oneName(positionals, action);
      const given = values as { for?: string; reason?: string };
      const forMs = given.for === undefined ? undefined : parseDuration(given.for, '--for');
      if (given.reason !== undefined && given.reason.length > MAX_REASON_LENGTH) {
        throw new CliError(
          2,
          `--reason: at most ${MAX_REASON_LENGTH} characters, got ${given.reason.length}`,
        );
      }
      const options =
        forMs === undefined && given.reason === undefined
          ? undefined
          : {
              ...(forMs === undefined ? {} : { forMs }),
              ...(given.reason === undefined ? {} : { reason: given.reason }),
            };
      const flags = checkStoreFlags(values);
      await withStore(flags, async (connection) => {
        const result = await applyOverride(connection, name, action, spec.override, options);
        printAction(result, values.json, connection);
        if (spec.override === 'forced-closed' && result.before?.state === 'open') {
          // Forcing closed hides the open state; it does not end it.
          err(
            `warning: ${printable(name)} is open (its computed state): \`${action}\` admits every call until ${forMs === undefined ? '`clear`' : 'it lapses'}, then it is open again. To start it afresh (closed, counts forgotten) use \`circuitry reset ${printable(name)}\`.`,
          );
        }
      });
    },
  };
}

const RESET_HELP = `circuitry reset: start a breaker afresh: closed, its counts forgotten.

Usage: npx circuitry reset NAME [--json] <store>

Closes the breaker (an open or half-open one admits calls again at once) and forgets its window
counts, consecutive failures, backoff, half-open probe leases and probe successes, in one atomic
store operation. It starts a new generation: results of calls admitted before the reset no
longer count. The override stays (forced-open stays forced-open; \`clear\` drops it). Processes
that share the store hear of an open breaker closing as of any other transition.
Prints the state before and after. Exit code 1 when the store holds nothing for NAME (a breaker
that never failed has nothing to forget).

A store without the reset operation (a third-party Store written before it) gets the closest
its other operations allow: the override is changed and set back, which starts a new generation
but keeps the counts and the computed state; a note on stderr says so.

  --json             a JSON object { name, action, before, after, kept }; before and after as
                     in \`status --json\`, kept true when counts or an open state remain
  --help             this text

${STORE_HELP}`;

const reset: Command = {
  summary: 'start a breaker afresh: closed, counts forgotten, new generation (override kept)',
  help: RESET_HELP,
  async run(args) {
    const { values, positionals } = parse(args, { ...STORE_OPTIONS, json: { type: 'boolean' } }, true);
    const name = oneName(positionals, 'reset');
    const flags = checkStoreFlags(values);
    const kept = await withStore(flags, async (connection) => {
      const result = await resetBreaker(connection, name);
      const kept = resetKept(result);
      printAction(result, values.json, connection, values.json ? { kept } : {});
      return kept;
    });
    if (kept) {
      err(
        'note: the window counts or the computed state remain: this store has no reset operation, so only the generation moved on (use close, then clear, to let calls through)',
      );
    }
  },
};

const WATCH_HELP = `circuitry watch: transitions as they happen, one line each, until Ctrl-C.

Usage: npx circuitry watch [--match GLOB] [--json] <store>

  --match GLOB       only names matching GLOB (* any characters, ? one)
  --json             one JSON object a line: { key, from, to, generation, openUntil, now, override? }
  --interval MS      how often a store that cannot push (DynamoDB) is read (default 1000)
  --help             this text

Redis and Postgres push every transition (pub/sub, LISTEN/NOTIFY; a drop is reported, since
pushes may have been missed meanwhile). DynamoDB is read every --interval: a breaker that
opened and closed in between shows no line.

${STORE_HELP}`;

const watch: Command = {
  summary: 'transitions as they happen, until Ctrl-C',
  help: WATCH_HELP,
  async run(args) {
    const { values } = parse(args, {
      ...STORE_OPTIONS,
      match: { type: 'string' },
      json: { type: 'boolean' },
      interval: { type: 'string' },
    });
    const pollMs = values.interval === undefined ? 1_000 : Number(values.interval);
    if (!Number.isInteger(pollMs) || pollMs < 100) {
      throw new CliError(2, `--interval must be an integer of at least 100 ms, got ${values.interval}`);
    }
    const flags = checkStoreFlags(values);
    await withStore(
      flags,
      async ({ store, callTimeoutMs, description }) => {
        // Fails (exit 1) now if the store cannot be read, rather than watching nothing.
        await bounded(store.list('', null), callTimeoutMs, 'list');
        const stopped = new Promise<void>((resolve) => {
          process.once('SIGINT', resolve).once('SIGTERM', resolve);
        });
        const watching = await watchTransitions(store, {
          match: glob(values.match),
          timeoutMs: callTimeoutMs,
          pollMs,
          onTransition: (message) =>
            out(values.json ? JSON.stringify(message) : formatTransition(message, new Date())),
          onResync: () =>
            err('note: the subscription dropped or started late; transitions may have been missed meanwhile'),
          onPollError: (error) => err(`note: reading the store failed: ${(error as Error).message}`),
        });
        err(
          `watching ${description} (${watching.pushed ? 'pushed' : `read every ${pollMs} ms`}); Ctrl-C stops`,
        );
        await stopped;
        await watching.stop();
      },
      { reconnect: true },
    );
  },
};

export const COMMANDS: Record<string, Command> = {
  list,
  status,
  ...Object.fromEntries(
    Object.entries(ACTIONS).map(([action, spec]) => [action, actionCommand(action, spec)]),
  ),
  reset,
  watch,
};
