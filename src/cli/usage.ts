import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

/**
 * Ends a command with an exit code and a message on stderr: 1 when something was not found or
 * the store could not be reached, 2 for bad usage (the command's help follows the message).
 */
export class CliError extends Error {
  constructor(
    readonly exitCode: 1 | 2,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** `parseArgs` whose errors are usage errors (exit 2). */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  positionals = false,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; allowPositionals: boolean; strict: true }>> {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (error) {
    throw new CliError(2, (error as Error).message);
  }
}
