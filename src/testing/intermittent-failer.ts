/**
 * How an {@link IntermittentFailer} decides each call: either a cycle of `successes` then
 * `failures`, repeated, or an explicit `pattern`.
 */
export interface IntermittentFailerOptions {
  /** Calls that succeed at the start of each cycle. @defaultValue 1 */
  readonly successes?: number;
  /** Calls that fail after them. @defaultValue 1 */
  readonly failures?: number;
  /**
   * An explicit pattern instead of the cycle: a string of `s` (success) and `f` (failure), with
   * spaces, `-` and `_` ignored for readability (`'sss ff'`), or an array of booleans (`true` =
   * success). Takes precedence over `successes` and `failures`.
   */
  readonly pattern?: string | readonly boolean[];
  /**
   * What happens after the last step: `'repeat'` the pattern, or keep answering `'succeed'` or
   * `'fail'` for ever (a dependency that recovers, or one that stays down).
   * @defaultValue 'repeat'
   */
  readonly then?: 'repeat' | 'succeed' | 'fail';
  /** Steps to skip at the start, so several failers built from one pattern can be out of phase. @defaultValue 0 */
  readonly offset?: number;
  /** The error a failing call throws; the call number starts at 1. @defaultValue an `IntermittentFailure` */
  readonly error?: (call: number) => unknown;
}

/** The error an {@link IntermittentFailer} throws by default. */
export class IntermittentFailure extends Error {
  /** Which call this was, starting at 1. */
  readonly call: number;

  constructor(call: number) {
    super(`intermittent failure (call ${call})`);
    this.name = 'IntermittentFailure';
    this.call = call;
  }
}

function invalid(name: string, expected: string, value: unknown): TypeError {
  const shown = typeof value === 'string' ? value : JSON.stringify(value);
  return new TypeError(`Expected \`${name}\` to be ${expected}, got \`${shown}\` (${typeof value})`);
}

function countOption(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw invalid(name, 'a non-negative integer', value);
  }
  return value;
}

function parsePattern(pattern: string | readonly boolean[]): boolean[] {
  if (typeof pattern !== 'string') {
    if (!Array.isArray(pattern) || !pattern.every((step) => typeof step === 'boolean')) {
      throw invalid('pattern', 'a string of s and f, or an array of booleans', pattern);
    }
    return [...pattern];
  }
  const steps: boolean[] = [];
  for (const char of pattern.toLowerCase()) {
    if (char === 's') steps.push(true);
    else if (char === 'f') steps.push(false);
    else if (!/[\s_-]/.test(char)) throw invalid('pattern', 'a string of s and f', pattern);
  }
  return steps;
}

/**
 * A deterministic stand-in for a flaky dependency: each call succeeds or fails according to a
 * fixed cycle or pattern, so a test of breaker behaviour does the same thing every run (no
 * `Math.random`, no timing).
 *
 * @example
 * ```ts
 * const failer = new IntermittentFailer({ successes: 3, failures: 2 }); // s s s f f s s s f f ...
 * await breaker.execute(() => failer.run(() => fetchInvoice(id)));
 * const down = new IntermittentFailer({ pattern: 'ffff', then: 'succeed' }); // down, then recovers
 * ```
 */
export class IntermittentFailer {
  readonly #steps: readonly boolean[];
  readonly #then: 'repeat' | 'succeed' | 'fail';
  readonly #offset: number;
  readonly #error: (call: number) => unknown;
  #calls = 0;
  #failures = 0;

  constructor(options: IntermittentFailerOptions = {}) {
    if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options);
    if (options.pattern !== undefined) {
      this.#steps = parsePattern(options.pattern);
    } else {
      const successes = countOption('successes', options.successes, 1);
      const failures = countOption('failures', options.failures, 1);
      this.#steps = [...Array<boolean>(successes).fill(true), ...Array<boolean>(failures).fill(false)];
    }
    const then = options.then ?? 'repeat';
    if (then !== 'repeat' && then !== 'succeed' && then !== 'fail') {
      throw invalid('then', "'repeat', 'succeed' or 'fail'", then);
    }
    if (this.#steps.length === 0 && then === 'repeat') {
      throw invalid('pattern', 'at least one step when `then` is repeat', options.pattern ?? '');
    }
    this.#then = then;
    this.#offset = countOption('offset', options.offset, 0);
    if (options.error !== undefined && typeof options.error !== 'function') {
      throw invalid('error', 'a function', options.error);
    }
    this.#error = options.error ?? ((call) => new IntermittentFailure(call));
  }

  /** Calls decided so far. */
  get calls(): number {
    return this.#calls;
  }

  /** Of those, the ones that failed. */
  get failures(): number {
    return this.#failures;
  }

  /** Of those, the ones that succeeded. */
  get successes(): number {
    return this.#calls - this.#failures;
  }

  /** Whether the next call will succeed, without deciding it. */
  peek(): boolean {
    return this.#stepAt(this.#calls + this.#offset);
  }

  /** Decides the next call: `true` if it succeeds. Never throws. */
  next(): boolean {
    const ok = this.peek();
    this.#calls += 1;
    if (!ok) this.#failures += 1;
    return ok;
  }

  /** Decides the next call and throws its error if it fails. */
  check(): void {
    if (!this.next()) throw this.#error(this.#calls);
  }

  /**
   * Decides the next call; if it succeeds, runs `work` and returns its result, otherwise rejects
   * without running it.
   */
  run(): Promise<void>;
  run<T>(work: () => T | PromiseLike<T>): Promise<T>;
  async run<T>(work?: () => T | PromiseLike<T>): Promise<T | undefined> {
    this.check();
    return work === undefined ? undefined : await work();
  }

  /** `fn` behind this failer: each call of the returned function decides one step. */
  wrap<A extends unknown[], T>(fn: (...args: A) => T | PromiseLike<T>): (...args: A) => Promise<T> {
    return async (...args: A) => {
      this.check();
      return await fn(...args);
    };
  }

  /** Starts over from the first step (with the same offset) and zeroes the counts. */
  reset(): void {
    this.#calls = 0;
    this.#failures = 0;
  }

  #stepAt(index: number): boolean {
    const steps = this.#steps;
    if (index < steps.length) return steps[index]!;
    if (this.#then === 'succeed') return true;
    if (this.#then === 'fail') return false;
    return steps[index % steps.length]!;
  }
}
