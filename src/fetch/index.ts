// circuitry/fetch: a `fetch` whose calls go through circuit breakers, one per origin by default.
import type { CircuitBreaker } from '../breaker.js';
import type { BreakerFactory } from '../factory.js';
import { invalid } from '../options.js';
import {
  NO_SIGNAL,
  callThrough,
  checkFunction,
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
  const failureOf = (response: Response): unknown => new HttpStatusError(response);

  return async function fetchThroughBreaker(
    input: string | URL | Request,
    init?: RequestInit,
  ): Promise<Response> {
    let target: string | URL | Request = input;
    let context: Context;
    if (contextOf !== undefined) {
      // One Request, handed to `context` and then to fetch: the body is read once.
      target = new Request(input, init);
      init = undefined;
      context = contextOf(target);
    } else {
      context = { origin: originOf(input) } as Context;
    }
    const breaker = factory.breakerFor(base, context) as CircuitBreaker<unknown>;
    const own = init?.signal ?? (target instanceof Request ? target.signal : undefined);
    const settled = await callThrough(
      breaker,
      own ?? NO_SIGNAL,
      (signal) => {
        // No timeout: execute hands back the signal it was given, which fetch already has.
        if (signal === NO_SIGNAL || signal === own) return fetchImpl(target, init);
        // The breaker's timeout signal lives until the response arrives; the caller's own
        // signal must still abort the body after that.
        return fetchImpl(target, { ...init, signal: own == null ? signal : AbortSignal.any([own, signal]) });
      },
      judge,
      failureOf,
    );
    if (!settled.ok) throw settled.error;
    const response = settled.value;
    if (settled.verdict !== 'failure') return response;
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
}

/** The origin of a URL as fetch takes it. */
/**
 * An http(s) URL whose origin is its start as written: a lower-case ASCII host name whose last
 * label starts with a letter (so not an IPv4 address in any of the forms URL rewrites), no user
 * info, and a port without leading zeros below 10,000 (a default port is checked apart).
 */
const PLAIN_ORIGIN = /^(https?:\/\/(?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*\.?(?::[1-9]\d{0,3})?)(?:[/?#]|$)/;

function originOf(input: string | URL | Request): string {
  if (typeof input === 'string') {
    // Most calls: no URL parse per request. A default port (which URL drops), upper case, user
    // info, IPv6 or an international name take the URL parser, so the origin is always URL's.
    const plain = PLAIN_ORIGIN.exec(input)?.[1];
    if (plain !== undefined && !/:(?:80|443)$/.test(plain)) return plain;
    return new URL(input).origin;
  }
  if (input instanceof URL) return input.origin;
  return new URL(input.url).origin;
}
