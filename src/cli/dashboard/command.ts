/** `npx circuitry dashboard`: serves the live dashboard until Ctrl-C. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import type { Command } from '../commands.js';
import { withStore } from '../commands.js';
import { glob } from '../fleet.js';
import { STORE_HELP, STORE_OPTIONS, checkStoreFlags } from '../store-connection.js';
import { CliError, parse } from '../usage.js';
import { FleetView } from './fleet-view.js';
import { DEFAULT_MAX_EVENT_CLIENTS, newToken, startDashboardServer } from './server.js';

const HELP = `circuitry dashboard: a live page of every breaker in the store, until Ctrl-C.

Usage: npx circuitry dashboard [--port 7070] [--host 127.0.0.1] [--token-file PATH] <store>

Breakers are grouped by base name (the part of the name before the first "/", as in
"charge-card/tenant-42"; the whole name when it has none), groups with open and half-open
breakers first. Each shows its state, override, counts, failure rate, retry-after counting
down, and buttons for the overrides (open, close, metrics-only, clear, reset); a timeline
lists recent transitions. Updates arrive over Server-Sent Events: Redis and Postgres push
transitions as they happen; DynamoDB is read every --interval.

The actions need the control token; without it the page is read-only. The token comes from
--token-file, else CIRCUITRY_DASHBOARD_TOKEN, else a new random one, written to a file that
only you can read (mode 0600, removed when the dashboard stops); the startup lines say where.
The token is not printed unless --print-token is given.

  --port N           port to listen on (default 7070; 0 picks a free one)
  --host H           address to bind (default 127.0.0.1: this machine only). Binding
                     another address shows the fleet to anyone who can reach it.
  --token-file PATH  read the control token from PATH (at least 8 characters; one line)
                     (env CIRCUITRY_DASHBOARD_TOKEN: the token itself)
  --token T          the control token on the command line: works, with a warning, since
                     other users see a command line in the process list
  --print-token      print the token and the URL that carries it
  --max-event-clients N
                     live pages (event streams) served at once (default 100); a page
                     that stops reading is dropped once 1 MiB waits unsent for it
  --match GLOB       only breakers whose names match GLOB (* any characters, ? one)
  --interval MS      full re-read period (default 2000; DynamoDB: how often it is read)
  --help             this text

${STORE_HELP}`;

const MIN_TOKEN_LENGTH = 8;

interface TokenChoice {
  readonly token: string;
  /** Where it came from, for the startup lines. */
  readonly source: string;
  /** A file this process wrote and removes when it stops. */
  readonly written: string | null;
}

function checkToken(token: string, from: string): string {
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new CliError(
      2,
      `${from} must hold a token of at least ${MIN_TOKEN_LENGTH} characters without spaces, got ${token.length} characters`,
    );
  }
  return token;
}

/** The control token: --token-file, the environment, --token (warned about), or a new one in a private file. */
export function chooseToken(
  values: { token?: string | undefined; 'token-file'?: string | undefined },
  env: NodeJS.ProcessEnv,
  warn: (text: string) => void,
): TokenChoice {
  const file = values['token-file'];
  if (file !== undefined && values.token !== undefined) {
    throw new CliError(2, 'give one of --token-file and --token, not both');
  }
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new CliError(2, `--token-file cannot be read: ${file}: ${(error as Error).message}`);
    }
    return {
      token: checkToken(text.replace(/\r?\n$/, ''), `--token-file ${file}`),
      source: `from ${file}`,
      written: null,
    };
  }
  if (values.token !== undefined) {
    warn(
      'warning: --token puts the token on the command line, where other users of this machine see it (ps); use CIRCUITRY_DASHBOARD_TOKEN or --token-file',
    );
    return { token: checkToken(values.token, '--token'), source: 'from --token', written: null };
  }
  const fromEnv = env.CIRCUITRY_DASHBOARD_TOKEN;
  if (fromEnv !== undefined && fromEnv !== '') {
    return {
      token: checkToken(fromEnv, 'CIRCUITRY_DASHBOARD_TOKEN'),
      source: 'from CIRCUITRY_DASHBOARD_TOKEN',
      written: null,
    };
  }
  const token = newToken();
  // A directory of our own (mode 0700) holding a file only we can read (0600), made without a race.
  const dir = mkdtempSync(join(tmpdir(), 'circuitry-dashboard-'));
  const path = join(dir, 'token');
  writeFileSync(path, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return { token, source: `written to ${path} (readable only by you; removed at exit)`, written: path };
}

export const dashboard: Command = {
  summary: 'a live web page of the fleet, with the override actions',
  help: HELP,
  async run(args) {
    const { values } = parse(args, {
      ...STORE_OPTIONS,
      port: { type: 'string', default: '7070' },
      host: { type: 'string', default: '127.0.0.1' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      'print-token': { type: 'boolean' },
      'max-event-clients': { type: 'string' },
      match: { type: 'string' },
      interval: { type: 'string' },
    });
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new CliError(2, `--port must be an integer from 0 to 65535, got ${values.port}`);
    }
    const intervalMs = values.interval === undefined ? 2_000 : Number(values.interval);
    if (!Number.isInteger(intervalMs) || intervalMs < 100) {
      throw new CliError(2, `--interval must be an integer of at least 100 ms, got ${values.interval}`);
    }
    const maxEventClients =
      values['max-event-clients'] === undefined
        ? DEFAULT_MAX_EVENT_CLIENTS
        : Number(values['max-event-clients']);
    if (!Number.isInteger(maxEventClients) || maxEventClients < 1 || maxEventClients > 10_000) {
      throw new CliError(
        2,
        `--max-event-clients must be an integer from 1 to 10000, got ${values['max-event-clients']}`,
      );
    }
    const flags = checkStoreFlags(values);
    const chosen = chooseToken(values, process.env, (text) => void process.stderr.write(`${text}\n`));
    try {
      await withStore(
        flags,
        async (connection) => {
          const view = new FleetView({
            store: connection.store,
            match: glob(values.match),
            timeoutMs: connection.callTimeoutMs,
            refreshMs: intervalMs,
            pollMs: intervalMs,
          });
          await view.start();
          let server;
          try {
            server = await startDashboardServer({
              connection,
              view,
              host: values.host,
              port,
              token: chosen.token,
              maxEventClients,
            });
          } catch (error) {
            await view.stop();
            throw new CliError(1, `cannot listen on ${values.host}:${port}: ${(error as Error).message}`);
          }
          process.stdout.write(
            `circuitry dashboard for ${connection.description}\n` +
              `  read-only:     ${server.url}\n` +
              (values['print-token'] === true
                ? `  with actions:  ${server.url}#token=${server.token}\n` +
                  `  token:         ${server.token} (${chosen.source})\n`
                : `  with actions:  enter the token in the page (--print-token prints a URL that carries it)\n` +
                  `  token:         ${chosen.source}\n`) +
              'Ctrl-C stops it.\n',
          );
          await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
          await server.close();
          await view.stop();
        },
        { reconnect: true },
      );
    } finally {
      if (chosen.written !== null) rmSync(dirname(chosen.written), { recursive: true, force: true });
    }
  },
};
