/**
 * `--dashboard`: the operator dashboard of `npx circuitry dashboard`, started by the demo against
 * the Redis and key prefix its worker processes share, so a newcomer watches tenants open and
 * close live, then looks around after the run until Ctrl-C.
 */
import { glob } from '../cli/fleet.js';
import { FleetView } from '../cli/dashboard/fleet-view.js';
import { startDashboardServer } from '../cli/dashboard/server.js';
import { openStore } from '../cli/store-connection.js';
import { CliError } from '../cli/usage.js';
import { DemoError } from './demo-error.js';

export interface DemoDashboard {
  /** The page, read-only. */
  readonly url: string;
  /** The page with the override actions (the token in the fragment, never sent to a server). */
  readonly urlWithActions: string;
  readonly description: string;
  close(): Promise<void>;
}

export async function startDemoDashboard(
  redisUrl: string,
  prefix: string,
  port: number,
): Promise<DemoDashboard> {
  let connection;
  try {
    // Reconnecting, as `npx circuitry dashboard` does: the page outlives a Redis blip.
    connection = await openStore({ redis: redisUrl, prefix }, { reconnect: true });
  } catch (error) {
    if (error instanceof CliError) throw new DemoError(error.exitCode, error.message);
    throw error;
  }
  // Re-read every second (transitions are pushed at once; counts only come with a read).
  const view = new FleetView({
    store: connection.store,
    match: glob(undefined),
    timeoutMs: connection.callTimeoutMs,
    refreshMs: 1_000,
    pollMs: 1_000,
  });
  try {
    await view.start();
  } catch (error) {
    await connection.close();
    throw new DemoError(
      1,
      `the dashboard cannot read ${connection.description}: ${(error as Error).message}`,
    );
  }
  let server;
  try {
    server = await startDashboardServer({ connection, view, host: '127.0.0.1', port });
  } catch (error) {
    await view.stop();
    await connection.close();
    throw new DemoError(
      1,
      `--dashboard-port ${port}: cannot listen on 127.0.0.1:${port}: ${(error as Error).message}`,
    );
  }
  const running = server;
  return {
    url: running.url,
    urlWithActions: `${running.url}#token=${running.token}`,
    description: connection.description,
    close: async () => {
      await running.close();
      await view.stop();
      await connection.close();
    },
  };
}
