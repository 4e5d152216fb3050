// circuitry/axios: an axios instance whose requests go through circuit breakers. The only module
// that imports axios.
import { getAdapter, isCancel } from 'axios';
import type { AxiosError, AxiosInstance, AxiosResponse, InternalAxiosRequestConfig } from 'axios';

import type { CircuitBreaker } from '../breaker.js';
import type { BreakerFactory } from '../factory.js';
import {
  NO_SIGNAL,
  callThrough,
  checkFunction,
  defaultHttpVerdict,
  openForRetryAfter,
  resolveHttpOptions,
  retryAfterMs,
  verdictOf,
} from '../fetch/http-outcome.js';
import type {
  HttpBreakerOptions,
  HttpResult,
  HttpVerdict,
  OptionsParameter,
  OriginContext,
} from '../fetch/http-outcome.js';
import { HttpStatusError } from '../fetch/http-status-error.js';

export { HttpStatusError, isHttpStatusError } from '../fetch/http-status-error.js';
export { defaultHttpVerdict } from '../fetch/http-outcome.js';
export type {
  HttpBreakerOptions,
  HttpResult,
  HttpVerdict,
  OptionsParameter,
  OriginContext,
} from '../fetch/http-outcome.js';

/** Options of `withBreaker`. Validated once, when it is called. */
export interface AxiosBreakerOptions<Context> extends HttpBreakerOptions<AxiosResponse> {
  /**
   * The breaker's context for a request, from axios's request config (`url`, `baseURL`,
   * `headers`...). @defaultValue `{ origin }` of the request's URL
   */
  readonly context?: (config: InternalAxiosRequestConfig) => Context;
}

const AXIOS_KEYS: ReadonlySet<string> = new Set(['context']);

/**
 * Puts every request of `instance` through the factory's breakers (by default one per origin,
 * `breakerFor('http', { origin })`), by wrapping its adapter: after the request interceptors,
 * before the response interceptors, so each retry an interceptor makes is counted as a call.
 * Returns `instance`. A request with its own `adapter` in its config is not covered.
 *
 * Same classification as `circuitry/fetch`: no answer (a network error, axios's `timeout`), 408,
 * 429, 500, 502, 503, 504 are failures; any other status is a success, even when axios throws for
 * it (a 404 is the request's problem). What axios would have resolved or thrown reaches the caller
 * unchanged. A 429 or 503 with `Retry-After` opens the breaker for that long, fleet-wide. A
 * rejected request is never sent and throws `CircuitOpenError`; the breaker's `timeoutMs` aborts
 * the request (`CallTimeoutError`); a cancelled request counts as neither success nor failure.
 *
 * ```ts
 * const api = withBreaker(axios.create({ baseURL: 'https://api.example.com' }), factory);
 * ```
 */
export function withBreaker<Context = OriginContext>(
  instance: AxiosInstance,
  factory: BreakerFactory<Context>,
  ...[options]: OptionsParameter<Context, AxiosBreakerOptions<Context>, InternalAxiosRequestConfig>
): AxiosInstance {
  const given: AxiosBreakerOptions<Context> = options ?? {};
  const o = resolveHttpOptions<AxiosResponse>(given, 'withBreaker options', AXIOS_KEYS);
  checkFunction('context', given.context);
  const contextOf = given.context;
  const base = o.base;
  const inner = instance.defaults.adapter;
  const resultOf = (ok: boolean, valueOrError: unknown): HttpResult<AxiosResponse> => {
    const response = ok ? (valueOrError as AxiosResponse) : (valueOrError as Partial<AxiosError>).response;
    return response === undefined ? { error: valueOrError } : { status: response.status, response };
  };
  const judge = (ok: boolean, valueOrError: unknown): HttpVerdict => {
    if (!ok && isCancel(valueOrError)) return 'ignore';
    if (o.classify !== null) return verdictOf(o, resultOf(ok, valueOrError));
    const response = ok ? (valueOrError as AxiosResponse) : (valueOrError as Partial<AxiosError>).response;
    return defaultHttpVerdict(response?.status);
  };
  const failureOf = (response: AxiosResponse): HttpStatusError =>
    new HttpStatusError({
      status: response.status,
      statusText: response.statusText,
      url: response.config.url ?? '',
      headers: new Headers(
        Object.entries(response.headers).flatMap(([name, value]): [string, string][] =>
          value == null ? [] : [[name, String(value)]],
        ),
      ),
    });

  instance.defaults.adapter = async function adapterThroughBreaker(
    config: InternalAxiosRequestConfig,
  ): Promise<AxiosResponse> {
    const adapter = getAdapter(inner, config);
    const origin = originOf(config);
    const context = contextOf === undefined ? ({ origin } as Context) : contextOf(config);
    const breaker = factory.breakerFor(base, context) as CircuitBreaker<unknown>;
    const own = config.signal as AbortSignal | undefined;
    const settled = await callThrough(
      breaker,
      own ?? NO_SIGNAL,
      (signal) =>
        adapter(
          signal === NO_SIGNAL || signal === own
            ? config
            : { ...config, signal: own == null ? signal : AbortSignal.any([own, signal]) },
        ),
      judge,
      failureOf,
    );
    if (settled.verdict === 'failure') {
      const response = settled.ok ? settled.value : (settled.error as Partial<AxiosError>).response;
      if (response !== undefined && (response.status === 429 || response.status === 503)) {
        const retryAfter: unknown = response.headers['retry-after'];
        const date: unknown = response.headers.date;
        const ms = retryAfterMs(
          typeof retryAfter === 'string' ? retryAfter : undefined,
          typeof date === 'string' ? date : undefined,
          Date.now(),
          o.maxRetryAfterMs,
        );
        if (ms !== null) await openForRetryAfter(breaker, ms, origin);
      }
    }
    if (settled.ok) return settled.value;
    throw settled.error;
  };
  return instance;
}

/** The origin of the request: its `url`, resolved against `baseURL` when relative. */
function originOf(config: InternalAxiosRequestConfig): string {
  return new URL(config.url ?? '', config.baseURL).origin;
}
