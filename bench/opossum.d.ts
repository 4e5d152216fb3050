// The few parts of opossum 9 the bench uses (it ships no types; @types/opossum lags its majors).
declare module 'opossum' {
  export default class CircuitBreaker<R = unknown> {
    constructor(action: (...args: never[]) => Promise<R>, options?: Record<string, unknown>);
    fire(...args: unknown[]): Promise<R>;
    open(): void;
    shutdown(): void;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }
}
