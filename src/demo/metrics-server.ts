/**
 * `--metrics PORT`: the demo's breakers in Prometheus text at http://127.0.0.1:PORT/metrics, from
 * `registerMetrics` (circuitry/prometheus). Every metric it registers declares the `sum`
 * aggregator, so the worker processes' registries (`--redis`) are summed with prom-client's own
 * cluster aggregation into one view, as if one process had made every call.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import type * as PromClientModule from 'prom-client';

import type { BreakerFactory } from '../factory.js';
import { DemoError } from './demo-error.js';

/** One registry's metrics, as `registry.getMetricsAsJSON()` gives them (plain data, IPC-safe). */
export type MetricsJson = readonly object[];

/** Reads the metrics of the current run: one entry per process. */
export type MetricsSource = () => Promise<readonly MetricsJson[]>;

type PromClient = typeof PromClientModule;

async function promClient(): Promise<PromClient> {
  try {
    return await import('prom-client');
  } catch {
    throw new DemoError(1, '--metrics needs the prom-client package (npm install prom-client)');
  }
}

/** A factory's metrics in a registry of their own, read as JSON (in this process or a worker's). */
export async function factoryMetrics<Context>(
  factory: BreakerFactory<Context>,
): Promise<() => Promise<MetricsJson>> {
  const [{ Registry }, { registerMetrics }] = await Promise.all([
    promClient(),
    import('../prometheus/index.js'),
  ]);
  const registry = new Registry();
  registerMetrics(factory, { registry });
  return () => registry.getMetricsAsJSON();
}

/**
 * The parent's requests for worker processes' metrics over IPC, by request id. A worker that does
 * not answer within a second (it is exiting) counts as having none.
 */
export class MetricsRequests {
  readonly #asked = new Map<number, (metrics: MetricsJson) => void>();
  #next = 0;

  /** Sends a request with `send(id)`; resolves with the answer to it. */
  ask(send: (id: number) => void): Promise<MetricsJson> {
    return new Promise((resolve) => {
      const id = this.#next++;
      const timer = setTimeout(() => {
        this.#asked.delete(id);
        resolve([]);
      }, 1_000);
      this.#asked.set(id, (metrics) => {
        clearTimeout(timer);
        this.#asked.delete(id);
        resolve(metrics);
      });
      send(id);
    });
  }

  answer(id: number, metrics: MetricsJson): void {
    this.#asked.get(id)?.(metrics);
  }
}

export interface MetricsServer {
  readonly url: string;
  /** What /metrics serves from now on; `null` while no run has breakers. */
  serve(source: MetricsSource | null): void;
  close(): Promise<void>;
}

export async function startMetricsServer(port: number): Promise<MetricsServer> {
  const { AggregatorRegistry } = await promClient();
  let source: MetricsSource | null = null;
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://demo').pathname;
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: try /metrics\n');
      return;
    }
    const current = source;
    (async () => {
      if (current === null) return { type: 'text/plain; version=0.0.4; charset=utf-8', text: '' };
      const registry = AggregatorRegistry.aggregate([...(await current())]);
      return { type: registry.contentType, text: await registry.metrics() };
    })().then(
      ({ type, text }) => res.writeHead(200, { 'content-type': type }).end(text),
      (error: unknown) =>
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${String(error)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) =>
      reject(new DemoError(2, `--metrics ${port}: cannot listen on 127.0.0.1:${port}: ${error.message}`)),
    );
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}/metrics`,
    serve: (next) => void (source = next),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
