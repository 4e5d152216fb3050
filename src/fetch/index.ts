// circuitry/fetch: a `fetch` whose calls go through circuit breakers, one per origin by default.
import type { CircuitBreaker } from '../breaker.js';
import type { BreakerFactory } from '../factory.js';
import { invalid } from '../options.js';
import { NEVER_ABORTED } from '../breaker.js';
import { ExpectedError } from '../errors.js';
import {
  checkFunction,
  plainOrigin,
  defaultHttpVerdict,
  openForRetryAfter,
  resolveHttpOptions,
  retryAfterMs,
  verdictOf,
} from './http-outcome.js';
import type { HttpBreakerOptions, HttpVerdict, OptionsParameter, OriginContext } from './http-outcome.js';
import { HttpStatusError } from './http-status-error.js';

export { HttpStatusError, isHttpStatusError } from './http-status-error.js';
export { defaultHttpVerdict } from './http-outcome.js';
export type {
  HttpBreakerOptions,
  HttpResult,
  HttpVerdict,
  OptionsParameter,
  OriginContext,
} from './http-outcome.js';

/** Options of `breakerFetch`. Validated once, when `breakerFetch` is called. */
export interface BreakerFetchOptions<Context> extends HttpBreakerOptions<Response> {
  /**
   * The breaker's context for a request, e.g. `(request) => ({ tenantId: tenantOf(request),
   * origin: new URL(request.url).origin })`. Given this, each call builds a `Request` to hand it.
   * @defaultValue `{ origin }` of the URL
   */
  readonly context?: (request: Request) => Context;
  /** The `fetch` to call. @defaultValue `globalThis.fetch` */
  readonly fetch?: typeof globalThis.fetch;
  /**
   * Throw an `HttpStatusError` (with the response's body released) for an answer counted as a
   * failure, instead of returning the response. @defaultValue false
   */
  readonly throwOnFailureStatus?: boolean;
}

/** `breakerFetch`'s options parameter: see `OptionsParameter`. */
type FetchOptionsParameter<Context> = OptionsParameter<Context, BreakerFetchOptions<Context>, Request>;

const FETCH_KEYS: ReadonlySet<string> = new Set(['context', 'fetch', 'throwOnFailureStatus']);

/**
 * A function with `fetch`'s signature whose calls go through the factory's breakers: by default
 * one breaker per origin (`breakerFor('http', { origin })`, named `http/https://api.example.com`).
 *
 * - No answer (a network error, the breaker's timeout) and 408, 429, 500, 502, 503, 504 count as
 *   failures; any other status as a success (`classify` overrides it). The caller still gets the
 *   response it would have got: a 503 is returned, not thrown (see `throwOnFailureStatus`).
 * - A 429 or 503 counted as a failure whose `Retry-After` asks for a wait opens the breaker for
 *   that long (at most `maxRetryAfterMs`), in every process sharing the store.
 * - A rejected call makes no request and throws `CircuitOpenError` with `retryAfterMs`.
 * - The breaker's `timeoutMs` aborts the request (`CallTimeoutError`) until its response
 *   arrives; reading the body is the caller's. The request's own signal still aborts it, and
 *   a call the caller aborted counts as neither success nor failure.
 *
 * ```ts
 * const factory = new BreakerFactory({ store, trip: consecutiveFailures(5) });
 * const fetch = breakerFetch(factory);
 * const response = await fetch('https://api.example.com/v1/invoices');
 * ```
 */
export function breakerFetch<Context = OriginContext>(
  factory: BreakerFactory<Context>,
  ...[options]: FetchOptionsParameter<Context>
): typeof globalThis.fetch {
  const given: BreakerFetchOptions<Context> = options ?? {};
  const o = resolveHttpOptions<Response>(given, 'breakerFetch options', FETCH_KEYS);
  checkFunction('context', given.context);
  checkFunction('fetch', given.fetch);
  if (given.throwOnFailureStatus !== undefined && typeof given.throwOnFailureStatus !== 'boolean') {
    throw invalid('throwOnFailureStatus', 'a boolean', given.throwOnFailureStatus);
  }
  const contextOf = given.context;
  const fetchImpl = given.fetch ?? globalThis.fetch;
  const throwOnFailureStatus = given.throwOnFailureStatus ?? false;
  const base = o.base;
  const judge: (ok: boolean, valueOrError: unknown) => HttpVerdict =
    o.classify === null
      ? (ok, valueOrError) => defaultHttpVerdict(ok ? (valueOrError as Response).status : undefined)
      : (ok, valueOrError) =>
          verdictOf(
            o,
            ok
              ? { status: (valueOrError as Response).status, response: valueOrError as Response }
              : { error: valueOrError },
          );
  /** A failure's answer, after the breaker counted it: Retry-After, then the caller's. */
  const answeredFailure = async (
    breaker: CircuitBreaker<unknown>,
    response: Response,
    target: string | URL | Request,
  ): Promise<Response> => {
    if (response.status === 429 || response.status === 503) {
      const ms = retryAfterMs(
        response.headers.get('retry-after'),
        response.headers.get('date'),
        Date.now(),
        o.maxRetryAfterMs,
      );
      if (ms !== null) await openForRetryAfter(breaker, ms, originOf(response.url || target));
    }
    if (!throwOnFailureStatus) return response;
    // The caller will not get the response: release its body so the connection can be reused.
    await response.body?.cancel().catch(() => undefined);
    throw new HttpStatusError(response);
  };

  // The call's answer, judged: shared by every call (no closures per request).
  const answered = (response: Response): Response => {
    const verdict = judge(true, response);
    if (verdict === 'success') return response;
    if (verdict === 'ignore') throw new IgnoredCall(response, undefined);
    const failure = new HttpStatusError(response);
    FAILED_ANSWERS.set(failure, response);
    throw failure;
  };
  // No answer: counted as a success (the caller still gets the error), ignored, or a failure.
  const noAnswer = (error: unknown): CountedAsSuccess => {
    const verdict = judge(false, error);
    if (verdict === 'success') return new CountedAsSuccess(error);
    throw verdict === 'ignore' ? new IgnoredCall(undefined, error) : error;
  };

  // The last plain origin and its context: most calls go to the origin of the call before, and
  // are found by a prefix test, with no scan, no new string (hashed again by the factory's map)
  // and no new context.
  let lastOrigin = '';
  let lastContext: Context | null = null;
  const sameOrigin = (url: string): Context | null => {
    if (lastContext === null || !url.startsWith(lastOrigin)) return null;
    if (url.length === lastOrigin.length) return lastContext;
    const c = url.charCodeAt(lastOrigin.length);
    return c === 47 /* / */ || c === 63 /* ? */ || c === 35 /* # */ ? lastContext : null;
  };
  const originContext = (input: string | URL | Request): Context => {
    if (typeof input === 'string') {
      const plain = plainOrigin(input);
      if (plain !== null) {
        lastOrigin = plain;
        return (lastContext = { origin: plain } as Context);
      }
    }
    return { origin: originOf(input) } as Context;
  };

  // A plain promise chain, not async functions within async functions: each layer costs a
  // promise and microtask turns per request, which on a ~100 µs local request is a visible
  // share of what the breaker adds (the bench's target is 5 %).
  return function fetchThroughBreaker(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    let target: string | URL | Request = input;
    let context: Context;
    try {
      if (contextOf !== undefined) {
        // One Request, handed to `context` and then to fetch: the body is read once.
        target = new Request(input, init);
        init = undefined;
        context = contextOf(target);
      } else {
        context = (typeof input === 'string' ? sameOrigin(input) : null) ?? originContext(input);
      }
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what the caller's input threw, as fetch would reject with it
      return Promise.reject(error);
    }
    const breaker = factory.breakerFor(base, context) as CircuitBreaker<unknown>;
    const own = init?.signal ?? (target instanceof Request ? target.signal : undefined);
    const run = (signal: AbortSignal): Promise<Response | CountedAsSuccess> => {
      let sent: Promise<Response>;
      try {
        // No timeout: execute hands back the signal it was given (or none), which fetch already has.
        sent =
          signal === NEVER_ABORTED || signal === own
            ? fetchImpl(target, init)
            : // The breaker's timeout signal lives until the response arrives; the caller's own
              // signal must still abort the body after that.
              fetchImpl(target, { ...init, signal: own == null ? signal : AbortSignal.any([own, signal]) });
      } catch (error) {
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what fetch threw, counted as its rejection
        sent = Promise.reject(error);
      }
      return sent.then(answered, noAnswer);
    };
    // Without a caller's signal, no options: execute may take its in-process fast path.
    return (own == null ? breaker.execute(run) : breaker.execute(run, { signal: own })).then(
      unwrap,
      (error: unknown) => {
        if (error instanceof IgnoredCall) {
          if (error.response !== undefined) return error.response;
          throw error.error;
        }
        const response = error instanceof HttpStatusError ? FAILED_ANSWERS.get(error) : undefined;
        // The breaker's own error (CircuitOpenError, CallTimeoutError), or the call's.
        if (response === undefined) throw error;
        return answeredFailure(breaker, response, target);
      },
    );
  };
}

/**
 * The answers counted as failures, by the error the breaker was handed for them (its `isFailure`
 * sees an `HttpStatusError`); the caller still gets the response.
 */
const FAILED_ANSWERS = new WeakMap<HttpStatusError, Response>();

/** Thrown into `execute` for a call classified `'ignore'` (counts nothing), with what it gave. */
class IgnoredCall extends ExpectedError {
  constructor(
    readonly response: Response | undefined,
    readonly error: unknown,
  ) {
    super('circuitry: an HTTP result classified as ignore');
  }
}

/** What a call that threw but was counted as a success resolves `execute` with: its error. */
class CountedAsSuccess {
  constructor(readonly error: unknown) {}
}

function unwrap(value: Response | CountedAsSuccess): Response {
  if (value instanceof CountedAsSuccess) throw value.error;
  return value;
}

/** The origin of a URL as fetch takes it: `URL.origin`, without parsing a URL when it is plain. */
function originOf(input: string | URL | Request): string {
  if (typeof input === 'string') return plainOrigin(input) ?? new URL(input).origin;
  if (input instanceof URL) return input.origin;
  return new URL(input.url).origin;
}
