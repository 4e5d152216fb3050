/** `npx circuitry dashboard`: serves the live dashboard until Ctrl-C. */
import type { Command } from '../commands.js';
import { withStore } from '../commands.js';
import { glob } from '../fleet.js';
import { STORE_HELP, STORE_OPTIONS, checkStoreFlags } from '../store-connection.js';
import { CliError, parse } from '../usage.js';
import { FleetView } from './fleet-view.js';
import { startDashboardServer } from './server.js';

const HELP = `circuitry dashboard: a live page of every breaker in the store, until Ctrl-C.

Usage: npx circuitry dashboard [--port 7070] [--host 127.0.0.1] [--token T] <store>

Breakers are grouped by base name (the part of the name before the first "/", as in
"charge-card/tenant-42"; the whole name when it has none), groups with open and half-open
breakers first. Each shows its state, override, counts, failure rate, retry-after counting
down, and buttons for the overrides (open, close, metrics-only, clear, reset); a timeline
lists recent transitions. Updates arrive over Server-Sent Events: Redis pushes transitions
as they happen; DynamoDB is read every --interval.

The actions need the token, printed at start (or given with --token) and carried in the URL
printed with it; without it the page is read-only.

  --port N           port to listen on (default 7070; 0 picks a free one)
  --host H           address to bind (default 127.0.0.1: this machine only). Binding
                     another address shows the fleet to anyone who can reach it.
  --token T          the control token (default: a new random one)
  --match GLOB       only breakers whose names match GLOB (* any characters, ? one)
  --interval MS      full re-read period (default 2000; DynamoDB: how often it is read)
  --help             this text

${STORE_HELP}`;

export const dashboard: Command = {
  summary: 'a live web page of the fleet, with the override actions',
  help: HELP,
  async run(args) {
    const { values } = parse(args, {
      ...STORE_OPTIONS,
      port: { type: 'string', default: '7070' },
      host: { type: 'string', default: '127.0.0.1' },
      token: { type: 'string' },
      match: { type: 'string' },
      interval: { type: 'string' },
    });
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new CliError(2, `--port must be an integer from 0 to 65535, got ${values.port}`);
    }
    if (values.token !== undefined && values.token.length < 8) {
      throw new CliError(2, '--token must be at least 8 characters');
    }
    const intervalMs = values.interval === undefined ? 2_000 : Number(values.interval);
    if (!Number.isInteger(intervalMs) || intervalMs < 100) {
      throw new CliError(2, `--interval must be an integer of at least 100 ms, got ${values.interval}`);
    }
    const flags = checkStoreFlags(values);
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
            ...(values.token === undefined ? {} : { token: values.token }),
          });
        } catch (error) {
          await view.stop();
          throw new CliError(1, `cannot listen on ${values.host}:${port}: ${(error as Error).message}`);
        }
        process.stdout.write(
          `circuitry dashboard for ${connection.description}\n` +
            `  read-only:     ${server.url}\n` +
            `  with actions:  ${server.url}#token=${server.token}\n` +
            `  token:         ${server.token}\n` +
            'Ctrl-C stops it.\n',
        );
        await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
        await server.close();
        await view.stop();
      },
      { reconnect: true },
    );
  },
};
