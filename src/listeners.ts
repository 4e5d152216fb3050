/** Removes the listener it was returned for. Calling it again does nothing. */
export type Disposer = () => void;

/**
 * A typed event with a cheap emptiness check, so the hot path pays nothing for events nobody
 * listens to. A listener that throws is reported to `onError` and does not stop the others.
 */
const NONE: readonly never[] = Object.freeze([]);

export class Listeners<T> {
  // Shared while empty: a process with 100,000 breakers pays nothing for their unused events.
  #listeners: ReadonlyArray<(event: T) => void> = NONE;

  constructor(private readonly onError: (error: unknown) => void = reportListenerError) {}

  get size(): number {
    return this.#listeners.length;
  }

  add(listener: (event: T) => void): Disposer {
    if (typeof listener !== 'function') {
      throw new TypeError(`Expected a listener function, got ${typeof listener}`);
    }
    // Copy on write: an emit in progress keeps iterating the array it started with.
    this.#listeners = [...this.#listeners, listener];
    let disposed = false;
    return () => {
      if (disposed) return;
      disposed = true;
      const at = this.#listeners.indexOf(listener);
      if (at !== -1) this.#listeners = this.#listeners.filter((_, i) => i !== at);
    };
  }

  emit(event: T): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.onError(error);
      }
    }
  }
}

const shared = new Listeners<unknown>();

/**
 * The one empty `Listeners` every breaker starts with, so 100,000 breakers do not hold 500,000
 * empty ones; `own` swaps it for a real one on the first `add`.
 */
export function noListeners<T>(): Listeners<T> {
  return shared as unknown as Listeners<T>;
}

/** `listeners` itself, or a new `Listeners` in place of the shared empty one. */
export function own<T>(listeners: Listeners<T>): Listeners<T> {
  return listeners === (shared as unknown as Listeners<T>) ? new Listeners<T>() : listeners;
}

function reportListenerError(error: unknown): void {
  // A listener's bug must not break the caller's call; surface it where Node reports such things.
  process.emitWarning(`circuitry: an event listener threw: ${String(error)}`, 'CircuitryListenerWarning');
}
