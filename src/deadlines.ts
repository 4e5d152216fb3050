/**
 * Call timeouts (`timeoutMs`) with one timer per duration rather than one per call. A
 * `setTimeout` and its `clearTimeout` cost ~0.6 µs a call, as much as the rest of a timed call;
 * calls of one duration expire in the order they started, so one timer, armed for the oldest call
 * still running, times them all.
 */

/** One timed call, from `startDeadline` until `endDeadline` or its expiry. */
export interface Deadline {
  /** `performance.now()` at which the call times out. */
  readonly at: number;
  /** Called once when the call times out (never after `endDeadline`). */
  readonly expire: () => void;
  /** Ended or expired. */
  done: boolean;
  readonly queue: DeadlineQueue;
}

/** Below this many entries a queue is not compacted (see `DeadlineQueue.end`). */
const COMPACT_MIN = 64;

/** The calls of one duration, in the order they started, and the timer of the oldest one running. */
class DeadlineQueue {
  readonly ms: number;
  #entries: Deadline[] = [];
  /** Index of the first entry not yet popped. */
  #head = 0;
  /** Entries started and neither ended nor expired. */
  #running = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(ms: number) {
    this.ms = ms;
  }

  get running(): number {
    return this.#running;
  }

  /** Entries held, running or ended behind one running (for tests). */
  get queued(): number {
    return this.#entries.length - this.#head;
  }

  start(expire: () => void): Deadline {
    const deadline: Deadline = { at: performance.now() + this.ms, expire, done: false, queue: this };
    this.#entries.push(deadline);
    this.#running += 1;
    // A timer armed for an earlier call fires first and re-arms for this one; one that is
    // unreferenced (nothing was running) keeps the process alive again.
    if (this.#timer === null) this.#timer = setTimeout(this.#fire, this.ms);
    else if (this.#running === 1) this.#timer.ref();
    return deadline;
  }

  end(deadline: Deadline): void {
    if (deadline.done) return;
    deadline.done = true;
    this.#running -= 1;
    const entries = this.#entries;
    if (this.#running === 0) {
      // Nothing running: the timer stays (the next call usually comes soon, and a timer made
      // per call is what this saves) but no longer keeps the process alive.
      entries.length = 0;
      this.#head = 0;
      this.#timer?.unref();
      return;
    }
    while (this.#head < entries.length && entries[this.#head]!.done) this.#head += 1;
    // Ended calls behind one still running wait for it; past twice the running ones they go,
    // so a call that hangs until its timeout cannot make the queue grow with the call rate.
    const queued = entries.length - this.#head;
    if (queued > COMPACT_MIN && queued > 2 * this.#running) {
      this.#entries = entries.filter((entry) => !entry.done);
      this.#head = 0;
    }
  }

  /** The timer: expires the calls whose time has come, then waits for the next one, if any. */
  readonly #fire = (): void => {
    this.#timer = null;
    const now = performance.now();
    const entries = this.#entries;
    const expired: Deadline[] = [];
    while (this.#head < entries.length) {
      const entry = entries[this.#head]!;
      if (!entry.done) {
        // Within a millisecond counts as due: timers run on the event loop's time, read when
        // the turn began, so this one may fire a fraction of a millisecond before `at`.
        if (entry.at > now + 1) break;
        entry.done = true;
        this.#running -= 1;
        expired.push(entry);
      }
      this.#head += 1;
    }
    if (this.#running === 0) {
      entries.length = 0;
      this.#head = 0;
      if (queues.get(this.ms) === this) queues.delete(this.ms);
    } else {
      this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(entries[this.#head]!.at - now)));
    }
    // Last: an expiry runs the caller's code (abort listeners), which may start or end calls.
    for (const entry of expired) entry.expire();
  };
}

/** The queue of each duration in use; a queue with nothing running leaves when its timer fires. */
const queues = new Map<number, DeadlineQueue>();

/** Starts timing a call of `ms` milliseconds: `expire` runs once if it is still running then. */
export function startDeadline(ms: number, expire: () => void): Deadline {
  let queue = queues.get(ms);
  if (queue === undefined) queues.set(ms, (queue = new DeadlineQueue(ms)));
  return queue.start(expire);
}

/** The call ended: it will not expire. Safe to call again, or after it expired. */
export function endDeadline(deadline: Deadline): void {
  deadline.queue.end(deadline);
}

/** Calls being timed now, for tests. @internal */
export function runningDeadlines(): number {
  let running = 0;
  for (const queue of queues.values()) running += queue.running;
  return running;
}
