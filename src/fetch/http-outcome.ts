// What the HTTP integrations (circuitry/fetch, circuitry/undici, circuitry/axios) share: which
// answers count as failures, Retry-After, the options they all take, and running one call
// through a breaker while the caller keeps what the call gave.
import type { CircuitBreaker } from '../breaker.js';
import { NEVER_ABORTED } from '../breaker.js';
import { ExpectedError, InvalidOptionError } from '../errors.js';
import { describeValue, invalid } from '../options.js';

/** The context the HTTP integrations give a breaker by default: the URL's origin. */
export interface OriginContext {
  /** `scheme://host[:port]`, as `URL.origin` has it: `https://api.example.com`. */
  readonly origin: string;
}

/**
 * An integration's options parameter: optional when the factory's context accepts `{ origin }`,
 * required with a `context` function otherwise (the default context would not be what the
 * factory names breakers by).
 */
/**
 * The options argument of an integration: optional when the factory's context is the default
 * `{ origin }`, required (with a `context` function) when the factory names breakers by another
 * context, so a factory keyed by tenant cannot be used without saying how to find the tenant.
 */
export type OptionsParameter<Context, Options, Argument> = OriginContext extends Context
  ? [options?: Options]
  : [
      options: Options & {
        /** The breaker's context for a request (e.g. its tenant and origin). */
        readonly context: (argument: Argument) => Context;
      },
    ];

/** How one HTTP call counts: against the dependency, for it, or not at all. */
export type HttpVerdict = 'failure' | 'success' | 'ignore';

/**
 * What an HTTP call gave, as `classify` sees it: an answer from the server (`status`, and the
 * integration's response object), or an error with no answer (a refused connection, a reset, a
 * DNS failure, a timeout).
 */
export type HttpResult<Response> =
  | {
      /** The response's status code. */
      readonly status: number;
      /** The response itself, as the caller gets it. */
      readonly response: Response;
      /** Absent: the server answered. */
      readonly error?: undefined;
    }
  | {
      /** Absent: no answer came. */
      readonly status?: undefined;
      /** Absent: no answer came. */
      readonly response?: undefined;
      /** What the request failed with (a network error, a timeout, an abort). */
      readonly error: unknown;
    };

/** The options every HTTP integration takes. */
export interface HttpBreakerOptions<Response> {
  /** The base name of the breakers. @defaultValue `'http'` */
  readonly base?: string;
  /**
   * Overrides the default classification for a result: return `'failure'`, `'success'` or
   * `'ignore'`, or `undefined` to keep the default (see `defaultHttpVerdict`).
   */
  readonly classify?: (result: HttpResult<Response>) => HttpVerdict | undefined;
  /**
   * The longest a `Retry-After` on a 429 or 503 counted as a failure opens the breaker for,
   * fleet-wide (`breaker.openFor`). `0` ignores `Retry-After`. @defaultValue 300_000 (5 minutes)
   */
  readonly maxRetryAfterMs?: number;
}

/** The options every integration resolved once. */
export interface ResolvedHttpOptions<Response> {
  readonly base: string;
  readonly classify: ((result: HttpResult<Response>) => HttpVerdict | undefined) | null;
  readonly maxRetryAfterMs: number;
}

const MAX_TIMER_MS = 2_147_483_647;

/** Statuses that say the dependency is unwell (or asks to be left alone), not the request. */
const FAILURE_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/**
 * The default classification: no answer (a network error, a timeout) and 408, 429, 500, 502,
 * 503, 504 are failures; any other status is a success, because the dependency answered (a 404
 * or a 400 is the request's problem, not the dependency's health).
 */
export function defaultHttpVerdict(status: number | undefined): HttpVerdict {
  return status === undefined || FAILURE_STATUSES.has(status) ? 'failure' : 'success';
}

/**
 * Checks the shared options and the integration's own (`extra`): an unknown key or a malformed
 * value throws `InvalidOptionError` naming it, what was expected and what was given.
 */
export function resolveHttpOptions<Response>(
  options: unknown,
  where: string,
  extra: ReadonlySet<string>,
): ResolvedHttpOptions<Response> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError(where, `Expected ${where} to be an object, got ${describeValue(options)}`);
  }
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!SHARED_KEYS.has(key) && !extra.has(key)) {
      throw new InvalidOptionError(key, `Unknown option \`${key}\` in ${where}`);
    }
  }
  const { base, classify, maxRetryAfterMs } = o;
  if (base !== undefined && (typeof base !== 'string' || base.length === 0)) {
    throw invalid('base', 'a non-empty string', base);
  }
  if (classify !== undefined && typeof classify !== 'function')
    throw invalid('classify', 'a function', classify);
  if (
    maxRetryAfterMs !== undefined &&
    (typeof maxRetryAfterMs !== 'number' ||
      !Number.isInteger(maxRetryAfterMs) ||
      maxRetryAfterMs < 0 ||
      maxRetryAfterMs > MAX_TIMER_MS)
  ) {
    throw invalid(
      'maxRetryAfterMs',
      `an integer from 0 (ignore Retry-After) to ${MAX_TIMER_MS}`,
      maxRetryAfterMs,
    );
  }
  return {
    base: base ?? 'http',
    classify: (classify as ResolvedHttpOptions<Response>['classify'] | undefined) ?? null,
    maxRetryAfterMs: maxRetryAfterMs ?? 300_000,
  };
}

const SHARED_KEYS: ReadonlySet<string> = new Set(['base', 'classify', 'maxRetryAfterMs']);

/** Throws unless `value` is a function or undefined: for the integrations' own options. */
export function checkFunction(option: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') throw invalid(option, 'a function', value);
}

/** The verdict for `result`: the user's `classify`, or the default when it gives none. */
export function verdictOf<Response>(
  o: ResolvedHttpOptions<Response>,
  result: HttpResult<Response>,
): HttpVerdict {
  if (o.classify !== null) {
    const verdict = o.classify(result);
    if (verdict === 'failure' || verdict === 'success' || verdict === 'ignore') return verdict;
    if (verdict !== undefined) {
      throw new InvalidOptionError(
        'classify',
        `Expected \`classify\` to return 'failure', 'success', 'ignore' or undefined, got ${describeValue(verdict)}`,
      );
    }
  }
  return defaultHttpVerdict(result.status);
}

/**
 * How long a `Retry-After` header asks for, in ms, at most `maxMs`; null when there is none, it
 * does not parse, or it asks for no wait. Delta-seconds, or an HTTP date measured from the
 * response's `Date` header when it has one (so the two clocks' skew does not count), else from
 * `now`.
 */
export function retryAfterMs(
  value: string | null | undefined,
  date: string | null | undefined,
  now: number,
  maxMs: number,
): number | null {
  if (value == null || maxMs === 0) return null;
  const text = value.trim();
  let ms: number;
  if (/^\d+$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const until = Date.parse(text);
    if (Number.isNaN(until)) return null;
    const from = date == null ? Number.NaN : Date.parse(date);
    ms = until - (Number.isNaN(from) ? now : from);
  }
  if (!(ms > 0)) return null;
  return Math.min(ms, maxMs);
}

/**
 * Opens `breaker` fleet-wide for `ms` because `origin` asked with `Retry-After`
 * (`breaker.openFor`: it yields to an operator's override). A store that cannot be reached is
 * reported as a process warning, never thrown: the caller's call already has its answer, and the
 * failure it counted still counts.
 */
export async function openForRetryAfter(
  breaker: CircuitBreaker<unknown>,
  ms: number,
  origin: string,
): Promise<void> {
  try {
    await breaker.openFor(ms, { reason: `Retry-After from ${origin}` });
  } catch (error) {
    process.emitWarning(
      `circuitry: breaker ${JSON.stringify(breaker.name.slice(0, 200))}: could not open for Retry-After (${ms} ms): ${String(error)}`,
      'CircuitryRetryAfterWarning',
    );
  }
}

/** What a call through `callThrough` gave, and how it counted. */
export type Settled<T> =
  | { readonly ok: true; readonly value: T; readonly verdict: HttpVerdict }
  | { readonly ok: false; readonly error: unknown; readonly verdict: HttpVerdict };

/**
 * Passed to `execute` when the caller gave no signal: `execute` hands it back to the call when
 * the breaker has no timeout, so the call knows there is nothing to abort it (and does not hang
 * a listener per request on one long-lived signal), without an AbortController per call.
 */
export const NO_SIGNAL: AbortSignal = new AbortController().signal;

/** Thrown into `execute` for an answer classified `'ignore'`: an `ExpectedError` counts nothing. */
const IGNORED = new ExpectedError('circuitry: an HTTP result classified as ignore');

/**
 * Runs `call` through `breaker.execute`, so the breaker's timeout and the caller's signal abort
 * it, and counts it by `judge` rather than by whether it threw: a 503 the caller receives as a
 * value counts as a failure (`failureOf` makes the error the breaker sees), a 404 an HTTP client
 * throws counts as a success. Resolves with what the call gave, for the caller; rejects only with
 * the breaker's own errors (`CircuitOpenError` without calling `call`, `CallTimeoutError`).
 *
 * The breaker's `isFailure` option, if set, still sees every failure (the call's error, or
 * `failureOf`'s) and may overrule it, as it does for any call.
 */
export async function callThrough<T>(
  breaker: CircuitBreaker<unknown>,
  signal: AbortSignal,
  call: (signal: AbortSignal) => Promise<T>,
  judge: (ok: boolean, valueOrError: unknown) => HttpVerdict,
  failureOf: (value: T) => unknown,
): Promise<Settled<T>> {
  let settled: Settled<T> | undefined;
  let thrown: unknown = NOT_THROWN;
  try {
    const run = async (callSignal: AbortSignal): Promise<void> => {
      let value: T;
      try {
        // Nothing to abort it: the call is told so (see NO_SIGNAL).
        value = await call(callSignal === NEVER_ABORTED ? NO_SIGNAL : callSignal);
      } catch (error) {
        const verdict = judge(false, error);
        settled = { ok: false, error, verdict };
        if (verdict === 'success') return;
        throw (thrown = verdict === 'ignore' ? IGNORED : error);
      }
      const verdict = judge(true, value);
      settled = { ok: true, value, verdict };
      if (verdict === 'success') return;
      throw (thrown = verdict === 'ignore' ? IGNORED : failureOf(value));
    };
    // Without a caller's signal, no options: execute may take its in-process fast path.
    await (signal === NO_SIGNAL ? breaker.execute(run) : breaker.execute(run, { signal }));
  } catch (error) {
    // Anything but what the call itself handed the breaker is the breaker's own error.
    if (error !== thrown) throw error;
  }
  if (settled === undefined) throw new Error('circuitry: the call settled nothing (a bug)');
  return settled;
}

const NOT_THROWN = Symbol('not thrown');

/**
 * The origin of an http(s) URL whose origin is its start as written (most calls), else null (the
 * URL parser decides): a lower-case scheme; a host that is lower-case ASCII labels whose last
 * starts with a letter (an optional trailing dot), or four decimal octets as URL writes them; no
 * user info; a port without leading zeros up to 65,535 that is not the scheme's default (which
 * URL drops). Anything else (upper case, `\`, IPv6, an international name or a punycode
 * label, other IPv4 forms) returns null.
 */
export function plainOrigin(url: string): string | null {
  const start = url.startsWith('http://') ? 7 : url.startsWith('https://') ? 8 : 0;
  if (start === 0) return null;
  const n = url.length;
  let i = start;
  let labels = 0;
  let lastFirst = 0; // the first character of the last label
  let octets = true; // every label is a decimal octet as URL writes it (0 to 255, no leading zero)
  let trailingDot = false;
  for (;;) {
    const labelStart = i;
    let digits = true;
    for (; i < n; i++) {
      const c = url.charCodeAt(i);
      if (c >= 48 && c <= 57) continue;
      if ((c >= 97 && c <= 122) || c === 45 /* - */) digits = false;
      else break;
    }
    const length = i - labelStart;
    if (length === 0) {
      // An empty label: only after a dot that ends the host ("example.com."), never "a..b".
      if (labels === 0 || (i < n && url.charCodeAt(i) === 46)) return null;
      trailingDot = true;
      break;
    }
    labels += 1;
    lastFirst = url.charCodeAt(labelStart);
    // Punycode ("xn--"): URL decodes and checks it, and may refuse it.
    if (length >= 4 && url.startsWith('xn--', labelStart)) return null;
    if (!digits || length > 3 || (length > 1 && lastFirst === 48) || Number(url.slice(labelStart, i)) > 255) {
      octets = false;
    }
    if (i < n && url.charCodeAt(i) === 46 /* . */) {
      i += 1;
      continue;
    }
    break;
  }
  const named = lastFirst >= 97 && lastFirst <= 122;
  if (!named && !(octets && labels === 4 && !trailingDot)) return null;
  let end = i;
  if (end < n && url.charCodeAt(end) === 58 /* : */) {
    for (end += 1; end < n; end++) {
      const c = url.charCodeAt(end);
      if (c < 48 || c > 57) break;
    }
    // URL drops a scheme's default port and leading zeros, and refuses a port above 65,535.
    const port = url.slice(i + 1, end);
    if (
      port.length === 0 ||
      port.length > 5 ||
      port.charCodeAt(0) === 48 ||
      (port.length === 5 && Number(port) > 65_535) ||
      port === (start === 7 ? '80' : '443')
    ) {
      return null;
    }
  }
  if (end < n) {
    const c = url.charCodeAt(end);
    if (c !== 47 /* / */ && c !== 63 /* ? */ && c !== 35 /* # */) return null;
  }
  return url.slice(0, end);
}
