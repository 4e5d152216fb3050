// circuitry/undici: an undici interceptor that puts every request of a dispatcher through circuit
// breakers, so that `setGlobalDispatcher` covers every `fetch` of a process. Only types are
// imported from undici: the interceptor is plain callbacks.
import type { IncomingHttpHeaders } from 'node:http';

import type { Dispatcher } from 'undici';

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
  HttpVerdict,
  OptionsParameter,
  OriginContext,
} from '../fetch/http-outcome.js';
import { HttpStatusError } from '../fetch/http-status-error.js';

export { HttpStatusError, isHttpStatusError } from '../fetch/http-status-error.js';
export { defaultHttpVerdict } from '../fetch/http-outcome.js';
export type { HttpBreakerOptions, HttpResult, HttpVerdict, OriginContext } from '../fetch/http-outcome.js';

/** What `classify` sees of an answer through undici: the status and headers, before the body. */
export interface UndiciResponse {
  /** The response's status code. */
  readonly statusCode: number;
  /** The response's headers (`retry-after` among them). */
  readonly headers: IncomingHttpHeaders;
}

/** Options of `circuitryInterceptor`. Validated once, when it is called. */
export interface CircuitryInterceptorOptions<Context> extends HttpBreakerOptions<UndiciResponse> {
  /**
   * The breaker's context for a request, from undici's dispatch options (`origin`, `path`,
   * `method`, `headers`). @defaultValue `{ origin }` of the request
   */
  readonly context?: (options: Dispatcher.DispatchOptions) => Context;
}

const INTERCEPTOR_KEYS: ReadonlySet<string> = new Set(['context']);

/**
 * An undici interceptor: every request dispatched through it goes through the factory's
 * breakers, by default one per origin (`breakerFor('http', { origin })`).
 *
 * ```ts
 * import { Agent, setGlobalDispatcher } from 'undici';
 * setGlobalDispatcher(new Agent().compose(circuitryInterceptor(factory)));
 * ```
 *
 * Same classification as `circuitry/fetch` (no answer, 408, 429, 500, 502, 503, 504 are failures),
 * counted when the response's headers arrive; the answer itself passes through untouched, body
 * and all. A 429 or 503 with `Retry-After` opens the breaker for that long, fleet-wide. A rejected
 * request is never sent: the dispatch handler gets the `CircuitOpenError` (`fetch` rejects with
 * `TypeError('fetch failed')` whose `cause` it is; undici's `request` rejects with it). The
 * breaker's `timeoutMs` aborts a request whose response has not started (`CallTimeoutError`); an
 * abort by the caller counts as neither success nor failure.
 */
export function circuitryInterceptor<Context = OriginContext>(
  factory: BreakerFactory<Context>,
  ...[options]: OptionsParameter<Context, CircuitryInterceptorOptions<Context>, Dispatcher.DispatchOptions>
): Dispatcher.DispatcherComposeInterceptor {
  const given: CircuitryInterceptorOptions<Context> = options ?? {};
  const o = resolveHttpOptions<UndiciResponse>(given, 'circuitryInterceptor options', INTERCEPTOR_KEYS);
  checkFunction('context', given.context);
  const contextOf = given.context;
  const base = o.base;
  const judge: (ok: boolean, valueOrError: unknown) => HttpVerdict =
    o.classify === null
      ? (ok, valueOrError) => defaultHttpVerdict(ok ? (valueOrError as UndiciResponse).statusCode : undefined)
      : (ok, valueOrError) =>
          verdictOf(
            o,
            ok
              ? {
                  status: (valueOrError as UndiciResponse).statusCode,
                  response: valueOrError as UndiciResponse,
                }
              : { error: valueOrError },
          );

  return (dispatch) =>
    function dispatchThroughBreaker(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) {
      const origin = originOf(opts.origin);
      const context = contextOf === undefined ? ({ origin } as Context) : contextOf(opts);
      const breaker = factory.breakerFor(base, context) as CircuitBreaker<unknown>;
      const call = new BreakerHandler(handler);
      callThrough(
        breaker,
        NO_SIGNAL,
        (signal) => call.start(dispatch, opts, signal),
        (ok, valueOrError) => (call.callerAborted ? 'ignore' : judge(ok, valueOrError)),
        (response) => failureOf(response, origin, opts.path),
      ).then(
        async (settled) => {
          if (!settled.ok || settled.verdict !== 'failure') return;
          const { statusCode, headers } = settled.value;
          if (statusCode !== 429 && statusCode !== 503) return;
          const ms = retryAfterMs(
            header(headers, 'retry-after'),
            header(headers, 'date'),
            Date.now(),
            o.maxRetryAfterMs,
          );
          if (ms !== null) await openForRetryAfter(breaker, ms, origin);
        },
        // The breaker's own error: a rejection (the request was never sent), or its timeout
        // (the abort reaches the handler through undici, as any abort does).
        (error: unknown) => call.failUnsent(error),
      );
      return true;
    };
}

function failureOf(response: UndiciResponse, origin: string, path: string): HttpStatusError {
  const headers = new Headers();
  for (const [name, value] of Object.entries(response.headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one);
  }
  return new HttpStatusError({ status: response.statusCode, statusText: '', url: origin + path, headers });
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function originOf(origin: string | URL | undefined): string {
  if (origin === undefined) return 'unknown';
  return typeof origin === 'string' ? new URL(origin).origin : origin.origin;
}

/**
 * Sits between undici and the request's handler: tells the breaker when the response starts (or
 * the request fails), aborts on the breaker's timeout, and notes an abort by the caller. Every
 * callback is passed on untouched, with a controller that notes the caller's aborts.
 */
class BreakerHandler implements Dispatcher.DispatchHandler {
  readonly #handler: Dispatcher.DispatchHandler;
  #controller: Dispatcher.DispatchController | null = null;
  #outer: CallerController | null = null;
  #resolve: ((response: UndiciResponse) => void) | null = null;
  #reject: ((error: unknown) => void) | null = null;
  /** The breaker's timeout fired before undici started the request. */
  #abortOnStart: Error | null = null;
  #sent = false;
  /** The caller aborted the request: that says nothing about the dependency. */
  callerAborted = false;

  constructor(handler: Dispatcher.DispatchHandler) {
    this.#handler = handler;
  }

  /** Dispatches the request; resolves when its response starts, rejects if it fails first. */
  start(
    dispatch: Dispatcher.Dispatch,
    opts: Dispatcher.DispatchOptions,
    signal: AbortSignal,
  ): Promise<UndiciResponse> {
    return new Promise<UndiciResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
      this.#sent = true;
      if (signal !== NO_SIGNAL) {
        signal.addEventListener('abort', () => this.#abort(signal.reason as Error), { once: true });
      }
      try {
        dispatch(opts, this);
      } catch (error) {
        this.onResponseError(this.#controller ?? unsentController(error as Error), error as Error);
      }
    });
  }

  /** The breaker failed the call before it was dispatched: the handler hears it as an error. */
  failUnsent(error: unknown): void {
    if (this.#sent) return;
    const reason = error instanceof Error ? error : new Error(String(error));
    this.#handler.onResponseError?.(unsentController(reason), reason);
  }

  #abort(reason: Error): void {
    if (this.#controller === null) this.#abortOnStart = reason;
    else this.#controller.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#controller = controller;
    this.#outer = new CallerController(controller, this);
    this.#handler.onRequestStart?.(this.#outer, context);
    if (this.#abortOnStart !== null) controller.abort(this.#abortOnStart);
  }

  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    socket: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>[3],
  ): void {
    this.#resolve?.({ statusCode, headers });
    this.#handler.onRequestUpgrade?.(this.#outer ?? controller, statusCode, headers, socket);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    // 1xx answers are interim: the call is not answered yet.
    if (statusCode >= 200) this.#resolve?.({ statusCode, headers });
    this.#handler.onResponseStart?.(this.#outer ?? controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#handler.onResponseData?.(this.#outer ?? controller, chunk);
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.#handler.onResponseEnd?.(this.#outer ?? controller, trailers);
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.#reject?.(error);
    this.#handler.onResponseError?.(this.#outer ?? controller, error);
  }
}

/** The controller the request's handler sees: undici's, noting when the caller aborts. */
class CallerController implements Dispatcher.DispatchController {
  readonly #inner: Dispatcher.DispatchController;
  readonly #call: BreakerHandler;

  constructor(inner: Dispatcher.DispatchController, call: BreakerHandler) {
    this.#inner = inner;
    this.#call = call;
  }

  get aborted(): boolean {
    return this.#inner.aborted;
  }
  get paused(): boolean {
    return this.#inner.paused;
  }
  get reason(): Error | null {
    return this.#inner.reason;
  }
  get rawHeaders(): Dispatcher.DispatchController['rawHeaders'] {
    return this.#inner.rawHeaders;
  }
  get rawTrailers(): Dispatcher.DispatchController['rawTrailers'] {
    return this.#inner.rawTrailers;
  }
  abort(reason: Error): void {
    if (!this.#inner.aborted) this.#call.callerAborted = true;
    this.#inner.abort(reason);
  }
  pause(): void {
    this.#inner.pause();
  }
  resume(): void {
    this.#inner.resume();
  }
}

/** The controller of a request that was never sent. */
function unsentController(reason: Error): Dispatcher.DispatchController {
  return {
    aborted: true,
    paused: false,
    reason,
    abort: () => undefined,
    pause: () => undefined,
    resume: () => undefined,
  };
}
