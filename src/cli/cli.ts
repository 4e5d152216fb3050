#!/usr/bin/env node
/**
 * `npx circuitry`: the operator commands (list, status, overrides, watch, dashboard) against a
 * Redis, DynamoDB or Postgres store, and the demo and flaky server of `src/demo/cli.ts`.
 */
import type { Command } from './commands.js';
import { COMMANDS } from './commands.js';
import { CliError } from './usage.js';

function help(commands: Record<string, Command>): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return `circuitry: operate distributed circuit breakers, or try the demo.

Usage: npx circuitry <command> [options]      npx circuitry <command> --help

Operating a fleet (against --redis URL, --dynamodb TABLE or --postgres URL, or the environment):
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Trying it:
  ${'demo'.padEnd(width)}  a multi-tenant job queue with and without per-tenant breakers (the default)
  ${'flaky-server'.padEnd(width)}  an HTTP service that fails on purpose

Exit codes: 0 done, 1 not found or the store cannot be reached, 2 bad usage.
`;
}

async function commands(): Promise<Record<string, Command>> {
  const { dashboard } = await import('./dashboard/command.js');
  return { ...COMMANDS, dashboard };
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  const all = await commands();
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help(all));
    return 0;
  }
  const command = name === undefined ? undefined : all[name];
  if (command === undefined) {
    if (name === undefined || name === 'demo' || name === 'flaky-server' || name.startsWith('-')) {
      // The demo's own entry point parses and runs (`npx circuitry` alone is the demo).
      await import('../demo/cli.js');
      return process.exitCode === undefined ? 0 : Number(process.exitCode);
    }
    process.stderr.write(`unknown command ${JSON.stringify(name)}\n\n${help(all)}`);
    return 2;
  }
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(command.help);
    return 0;
  }
  try {
    await command.run(args);
    return 0;
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    process.stderr.write(
      `circuitry ${name}: ${error.message}\n${error.exitCode === 2 ? `\nUsage: npx circuitry ${name} --help\n` : ''}`,
    );
    return error.exitCode;
  }
}

const code = await main(process.argv.slice(2));
// Everything the command opened is closed; exit once stdout is flushed rather than wait on a
// socket a driver keeps.
process.exitCode = code;
process.stdout.write('', () => process.exit(code));
