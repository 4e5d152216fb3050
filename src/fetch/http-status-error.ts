import { CircuitryError } from '../errors.js';

/**
 * An HTTP answer counted as a failure (a 503, a 429...). `breakerFetch` throws it only with
 * `throwOnFailureStatus: true` (its body released); otherwise the caller gets the response. The
 * breakers' `isFailure` and `onFailure` listeners see it for every failure status that the client
 * did not throw itself (fetch and undici answers; axios throws its own `AxiosError`).
 */
export class HttpStatusError extends CircuitryError {
  /** Always `'HTTP_STATUS'`: test it (or `isHttpStatusError`) rather than `instanceof`. */
  declare readonly code: 'HTTP_STATUS';
  /** The response's status, e.g. 503. */
  readonly status: number;
  /** The response's status text, e.g. `Service Unavailable`. */
  readonly statusText: string;
  /** The URL that answered (after redirects). */
  readonly url: string;
  /** The response's headers (`Retry-After`, ...). */
  readonly headers: Headers;

  /** From a fetch `Response`, or the same fields from another client. */
  constructor(response: Pick<Response, 'status' | 'statusText' | 'url' | 'headers'>) {
    super(
      'HTTP_STATUS',
      `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''} from ${response.url}`,
    );
    this.name = 'HttpStatusError';
    this.status = response.status;
    this.statusText = response.statusText;
    this.url = response.url;
    this.headers = response.headers;
  }
}

/** Whether `error` is an `HttpStatusError` (by its `code`, so two copies of circuitry agree). */
export function isHttpStatusError(error: unknown): error is HttpStatusError {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'HTTP_STATUS';
}
