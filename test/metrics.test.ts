import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';

import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import type { HistogramMetricData, SumMetricData } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';

import {
  BreakerFactory,
  MemoryStore,
  adaptiveThrottle,
  consecutiveFailures,
  healthHandler,
} from '../src/index.js';
import { registerMetrics as registerOpenTelemetry } from '../src/opentelemetry/index.js';
import { registerMetrics as registerPrometheus } from '../src/prometheus/index.js';
import { ManualClock } from '../src/testing/manual-clock.js';

// The same scripted sequence read by Prometheus text and by an OpenTelemetry reader: exact
// counters and label sets, bounded by base names whatever the number of tenants.

const ok = (): Promise<string> => Promise.resolve('value');
const fail = (): Promise<never> => Promise.reject(new Error('down'));

/** trip (3 failures), 2 rejections, a probe that succeeds (closes), 1 success: for tenant a. */
async function script(factory: BreakerFactory<{ tenant: string }>, clock: ManualClock): Promise<void> {
  const a = factory.breakerFor('sync', { tenant: 'a' });
  const b = factory.breakerFor('sync', { tenant: 'b' });
  await b.execute(ok);
  for (let i = 0; i < 3; i++) await a.execute(fail).catch(() => undefined);
  for (let i = 0; i < 2; i++) await a.execute(ok).catch(() => undefined);
  clock.advance(10_001);
  await a.execute(ok); // the probe
  await a.execute(ok);
}

function makeFactory() {
  const clock = new ManualClock();
  const factory = new BreakerFactory<{ tenant: string }>({
    clock,
    store: new MemoryStore({ clock }),
    name: (base, ctx) => `${base}/${ctx?.tenant ?? 'none'}`,
    trip: consecutiveFailures(3),
    openMs: 10_000,
    jitter: 0,
  });
  return { clock, factory };
}

function lines(text: string, name: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .sort();
}

class TestReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

describe('metrics', () => {
  it('Prometheus: a transition another process made is counted as learnt, so summing made counts each once', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const options = { store, clock, trip: consecutiveFailures(2), openMs: 10_000, jitter: 0 };
    const maker = new BreakerFactory(options);
    const listener = new BreakerFactory(options);
    const registries = [new Registry(), new Registry()];
    registerPrometheus(maker, { registry: registries[0]! });
    registerPrometheus(listener, { registry: registries[1]! });
    await listener.breakerFor('sync').execute(async () => 'ok'); // it knows the breaker
    for (let i = 0; i < 2; i++) {
      await maker
        .breakerFor('sync')
        .execute(async () => Promise.reject(new Error('down')))
        .catch(() => undefined);
    }
    await new Promise((resolve) => setImmediate(resolve));
    const [made, learnt] = await Promise.all(registries.map((r) => r.metrics()));
    assert.deepEqual(lines(made!, 'circuitry_transitions_total'), [
      'circuitry_transitions_total{base="sync",from="closed",to="open",origin="made"} 1',
    ]);
    assert.deepEqual(lines(learnt!, 'circuitry_transitions_total'), [
      'circuitry_transitions_total{base="sync",from="closed",to="open",origin="learnt"} 1',
    ]);
    await maker.close();
    await listener.close();
  });

  it('Prometheus: exact counters and label sets after trip, rejections, probe and close', async () => {
    const { clock, factory } = makeFactory();
    const registry = new Registry();
    registerPrometheus(factory, { registry, perBreaker: {} });
    await script(factory, clock);
    const text = await registry.metrics();
    assert.deepEqual(lines(text, 'circuitry_calls_total'), [
      'circuitry_calls_total{base="sync",outcome="failure",reason=""} 3',
      'circuitry_calls_total{base="sync",outcome="rejected",reason="open"} 2',
      'circuitry_calls_total{base="sync",outcome="success",reason=""} 3',
    ]);
    assert.deepEqual(lines(text, 'circuitry_transitions_total'), [
      'circuitry_transitions_total{base="sync",from="closed",to="open",origin="made"} 1',
      'circuitry_transitions_total{base="sync",from="half-open",to="closed",origin="made"} 1',
      'circuitry_transitions_total{base="sync",from="open",to="half-open",origin="made"} 1',
    ]);
    assert.ok(lines(text, 'circuitry_breakers').includes('circuitry_breakers{base="sync",state="closed"} 2'));
    assert.ok(text.includes('circuitry_call_duration_seconds_count{base="sync",outcome="success"} 3'));
    assert.ok(
      text.includes('circuitry_call_duration_seconds_bucket{base="sync",outcome="failure",le="+Inf"} 3'),
    );
    assert.deepEqual(lines(text, 'circuitry_breaker_open'), [], 'nothing open now');
    await factory.breakerFor('sync', { tenant: 'b' }).force('forced-open');
    const after = await registry.metrics();
    assert.deepEqual(lines(after, 'circuitry_breaker_open'), ['circuitry_breaker_open{name="sync/b"} 1']);
    assert.ok(
      lines(after, 'circuitry_breakers').includes('circuitry_breakers{base="sync",state="forced-open"} 1'),
    );
  });

  it('Prometheus: the highest throttle rejection rate per base name, and throttled rejections', async () => {
    const factory = new BreakerFactory<{ tenantId: string }>({
      store: new MemoryStore(),
      byBaseName: { pay: { trip: adaptiveThrottle() } },
    });
    const registry = new Registry();
    registerPrometheus(factory, { registry });
    await factory.breakerFor('other').execute(ok);
    await factory.breakerFor('pay', { tenantId: 'well' }).execute(ok);
    const sick = factory.breakerFor('pay', { tenantId: 'sick' });
    for (let i = 0; i < 100; i++) await sick.execute(fail).catch(() => undefined);
    const text = await registry.metrics();
    const [line, ...more] = lines(text, 'circuitry_throttle_rejection_rate');
    assert.equal(more.length, 0, 'only the base name that throttles');
    assert.match(line ?? '', /^circuitry_throttle_rejection_rate\{base="pay"\} 0\.9$/);
    assert.match(text, /circuitry_calls_total\{base="pay",outcome="rejected",reason="throttled"\} \d+/);
    await factory.close();
  });

  it('100,000 tenants under one base name make a bounded number of series', async () => {
    const { factory } = makeFactory();
    const registry = new Registry();
    registerPrometheus(factory, { registry, perBreaker: { max: 10 } });
    for (let i = 0; i < 100_000; i++) {
      await factory
        .breakerFor('sync', { tenant: `t${i}` })
        .execute(i % 50_000 < 5 ? fail : ok)
        .catch(() => undefined);
    }
    const text = await registry.metrics();
    const series = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    assert.ok(series.length < 120, `${series.length} series`);
    assert.ok(!text.includes('tenant'), 'no tenant in any label');
  });

  it('times every call on the closed path, alone or overlapping, with the real duration', async () => {
    const factory = new BreakerFactory(); // the system clock: durations are real
    const registry = new Registry();
    registerPrometheus(factory, { registry });
    const breaker = factory.breakerFor('timed');
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    for (let i = 0; i < 3; i++) await breaker.execute(() => sleep(30)); // alone
    await Promise.all(Array.from({ length: 4 }, () => breaker.execute(() => sleep(30)))); // overlapping
    await breaker.execute(() => Promise.reject(new Error('down'))).catch(() => undefined);
    const text = await registry.metrics();
    const value = (series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(series));
      assert.ok(line !== undefined, series);
      return Number(line.split(' ').at(-1));
    };
    assert.equal(value('circuitry_calls_total{base="timed",outcome="success"'), 7);
    assert.equal(value('circuitry_call_duration_seconds_count{base="timed",outcome="success"}'), 7);
    assert.equal(value('circuitry_call_duration_seconds_count{base="timed",outcome="failure"}'), 1);
    // Each call slept at least 30 ms: none was timed from another call's start or at 0.
    assert.equal(
      value('circuitry_call_duration_seconds_bucket{base="timed",outcome="success",le="0.025"}'),
      0,
    );
    assert.ok(value('circuitry_call_duration_seconds_sum{base="timed",outcome="success"}') >= 7 * 0.029);
  });

  it('OpenTelemetry: the in-memory reader sees the same numbers', async () => {
    const { clock, factory } = makeFactory();
    const reader = new TestReader();
    const provider = new MeterProvider({ readers: [reader] });
    registerOpenTelemetry(factory, { meterProvider: provider });
    await script(factory, clock);
    const { resourceMetrics } = await reader.collect();
    const all = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
    const byName = (name: string) => all.find((m) => m.descriptor.name === name);
    const calls = byName('circuitry.calls') as SumMetricData;
    const points = calls.dataPoints
      .map((p) => `${String(p.attributes.outcome)}/${String(p.attributes.reason)}=${p.value}`)
      .sort();
    assert.deepEqual(points, ['failure/=3', 'rejected/open=2', 'success/=3']);
    const transitions = (byName('circuitry.transitions') as SumMetricData).dataPoints
      .map((p) => `${String(p.attributes.from)}>${String(p.attributes.to)}=${p.value}`)
      .sort();
    assert.deepEqual(transitions, ['closed>open=1', 'half-open>closed=1', 'open>half-open=1']);
    const durations = byName('circuitry.call.duration') as HistogramMetricData;
    const success = durations.dataPoints.find((p) => p.attributes.outcome === 'success');
    assert.equal(success?.value.count, 3);
    await provider.shutdown();
  });

  it('healthHandler answers 200 when closed, 503 when a breaker is open unless allowed', async () => {
    const { factory } = makeFactory();
    const strict = healthHandler(factory);
    const lenient = healthHandler(factory, { allowOpen: (b) => b.baseName === 'sync' });
    const server = createServer((req, res) => (req.url === '/strict' ? strict : lenient)(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await factory.breakerFor('sync', { tenant: 'a' }).execute(ok);
      assert.equal((await fetch(`${url}/strict`)).status, 200);
      for (let i = 0; i < 3; i++)
        await factory
          .breakerFor('sync', { tenant: 'a' })
          .execute(fail)
          .catch(() => 0);
      const response = await fetch(`${url}/strict`);
      assert.equal(response.status, 503);
      const body = (await response.json()) as {
        healthy: boolean;
        notClosed: { name: string; state: string }[];
      };
      assert.equal(body.healthy, false);
      assert.deepEqual(
        body.notClosed.map((b) => `${b.name}:${b.state}`),
        ['sync/a:open'],
      );
      assert.equal((await fetch(`${url}/lenient`)).status, 200);
    } finally {
      server.close();
    }
  });
});
