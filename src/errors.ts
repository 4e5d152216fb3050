import type { RejectReason } from './core/types.js';

/**
 * The base of every error circuitry throws. Guards check the stable `code`, not `instanceof`,
 * so two copies of the package in one process still recognise each other's errors.
 */
export class CircuitryError extends Error {
  /** Says which error this is (`'CIRCUIT_OPEN'`, `'INVALID_OPTION'`, ...): what the guards check. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CircuitryError';
    this.code = code;
  }
}

/** A call was rejected without running because the breaker does not admit calls now. */
export class CircuitOpenError extends CircuitryError {
  /** Always `'CIRCUIT_OPEN'`. */
  declare readonly code: 'CIRCUIT_OPEN';
  /** The name of the breaker that rejected the call. */
  readonly breakerName: string;
  /** Why the breaker rejected the call. */
  readonly reason: RejectReason;
  /** How long until the breaker may admit a call; use it to defer the job. */
  readonly retryAfterMs: number;

  constructor(
    breakerName: string,
    reason: RejectReason,
    retryAfterMs: number,
    options?: { cause?: unknown },
  ) {
    super('CIRCUIT_OPEN', `Circuit breaker "${breakerName}" rejected the call (${reason})`, options);
    this.name = 'CircuitOpenError';
    this.breakerName = breakerName;
    this.reason = reason;
    this.retryAfterMs = retryAfterMs;
  }
}

/** An option was missing or malformed. Thrown once, at construction. */
export class InvalidOptionError extends CircuitryError {
  /** Always `'INVALID_OPTION'`. */
  declare readonly code: 'INVALID_OPTION';
  /** The option that is wrong, as a path where it is nested (`trip.threshold`, `byBaseName["a"].openMs`). */
  readonly option: string;

  constructor(option: string, message: string) {
    super('INVALID_OPTION', message);
    this.name = 'InvalidOptionError';
    this.option = option;
  }
}

/** A call ran longer than `timeoutMs`; its signal was aborted and it counts as a failure. */
export class CallTimeoutError extends CircuitryError {
  /** Always `'CALL_TIMEOUT'`. */
  declare readonly code: 'CALL_TIMEOUT';
  /** The timeout the call ran past, in ms. */
  readonly timeoutMs: number;

  constructor(breakerName: string, timeoutMs: number) {
    super('CALL_TIMEOUT', `Call through circuit breaker "${breakerName}" timed out after ${timeoutMs} ms`);
    this.name = 'CallTimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

/** The store did not answer in time or answered with an error or a malformed reply. */
export class StoreError extends CircuitryError {
  /** Always `'STORE_ERROR'`. */
  declare readonly code: 'STORE_ERROR';

  constructor(message: string, options?: { cause?: unknown }) {
    super('STORE_ERROR', message, options);
    this.name = 'StoreError';
  }
}

/**
 * Throw (or wrap) with this to say "this failure is expected and says nothing about the
 * dependency's health" (a 404, a validation error). It is rethrown to the caller untouched and
 * counted as neither a success nor a failure. Like the Go seed's `ExpectedConditionError`.
 */
export class ExpectedError extends CircuitryError {
  /** Always `'EXPECTED'`. */
  declare readonly code: 'EXPECTED';

  constructor(message: string, options?: { cause?: unknown }) {
    super('EXPECTED', message, options);
    this.name = 'ExpectedError';
  }
}

function hasCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

/** Whether `error` is a `CircuitOpenError` (by its `code`, so a copy from another package instance counts). */
export function isCircuitOpenError(error: unknown): error is CircuitOpenError {
  return hasCode(error, 'CIRCUIT_OPEN');
}

/** Whether `error` is an `ExpectedError` (by its `code`, so a copy from another package instance counts). */
export function isExpectedError(error: unknown): error is ExpectedError {
  return hasCode(error, 'EXPECTED');
}

/** Whether `error` is a `CallTimeoutError` (by its `code`, so a copy from another package instance counts). */
export function isCallTimeoutError(error: unknown): error is CallTimeoutError {
  return hasCode(error, 'CALL_TIMEOUT');
}

/** Whether `error` is a `StoreError` (by its `code`, so a copy from another package instance counts). */
export function isStoreError(error: unknown): error is StoreError {
  return hasCode(error, 'STORE_ERROR');
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

function rejectionMessage(error: CircuitOpenError): string {
  return `Circuit breaker "${error.breakerName}" rejected the call (${error.reason})`;
}

// Rejections built by `rejection` carry no own `message` or `stack`: these supply them, and an
// assignment makes an own property, as on any error.
for (const [key, get] of [
  ['message', rejectionMessage],
  ['stack', (error: CircuitOpenError) => `${error.name}: ${rejectionMessage(error)}`],
] as const) {
  Object.defineProperty(CircuitOpenError.prototype, key, {
    configurable: true,
    get(this: CircuitOpenError) {
      return get(this);
    },
    set(this: CircuitOpenError, value: unknown) {
      Object.defineProperty(this, key, { value, writable: true, configurable: true, enumerable: false });
    },
  });
}

/**
 * Builds a rejection without running the `Error` constructor: a rejection is routine, happens at
 * the rate of incoming calls, and even with no stack frames `new Error` costs ~0.4 µs here, most
 * of a rejection. The result is a `CircuitOpenError` (and an `Error`) by prototype, with
 * `message`, `name`, `code` and a one-line `stack`; only `util.types.isNativeError` tells it apart.
 */
export function rejection(breakerName: string, reason: RejectReason, retryAfterMs: number): CircuitOpenError {
  const error = Object.create(CircuitOpenError.prototype) as Writable<CircuitOpenError>;
  error.name = 'CircuitOpenError';
  error.code = 'CIRCUIT_OPEN';
  error.breakerName = breakerName;
  error.reason = reason;
  error.retryAfterMs = Math.max(0, Math.ceil(retryAfterMs));
  return error;
}
