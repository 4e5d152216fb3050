// The demo's one error type, in a file of its own so every module can import it without a cycle.

/**
 * Ends the demo with a one-line message on stderr: exit 1 when a store cannot be reached or a run
 * failed, 2 for bad usage, 130 when Ctrl-C stopped a run.
 */
export class DemoError extends Error {
  constructor(
    readonly exitCode: 1 | 2 | 130,
    message: string,
  ) {
    super(message);
    this.name = 'DemoError';
  }
}
