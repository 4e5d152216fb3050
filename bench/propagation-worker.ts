/**
 * One of the "other processes" of the open-propagation case (bench/propagation.ts): its own ioredis
 * client, a BreakerFactory on a RedisStore with the parent's prefix and default options, and the
 * breaker the parent names executed every millisecond. Reports, in wall-clock ms
 * (`performance.timeOrigin + performance.now()`, comparable between processes on one machine),
 * when the breaker first rejected a call after the parent tripped it, and when the raw pub/sub
 * message of that open reached a plain subscriber of its own.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { Redis } from 'ioredis';

import { BreakerFactory, isCircuitOpenError } from '../src/index.js';
import type { CircuitBreaker } from '../src/index.js';
import { breakerKey, eventsChannel } from '../src/stores/redis/keys.js';
import { RedisStore } from '../src/stores/redis/index.js';

import { noop, wallMs } from './harness.js';
import type { FromParent, ToParent } from './propagation.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = process.env.BENCH_PREFIX!;
const send = (message: ToParent): void => {
  process.send!(message);
};

const client = new Redis(url, { connectionName: 'circuitry-bench' });
const subscriber = client.duplicate();
const factory = new BreakerFactory({ store: new RedisStore({ client, prefix }) });
const loopDelay = monitorEventLoopDelay({ resolution: 1 });

let current: {
  name: string;
  key: string;
  breaker: CircuitBreaker;
  successes: number;
  /** The control: no calls, only the raw subscriber listens. */
  idle: boolean;
} | null = null;
let readySent = false;
let breakerAt: number | null = null;
let rawAt: number | null = null;
/** The server's time of the open, from the message (whole ms, rounded down). */
let serverAt: number | null = null;
let reported = false;
let calls = 0;
let inFlight = 0;

/** Reports once both are known, or 2 s after the first of them (the other then is null). */
function report(): void {
  if (reported || current === null) return;
  if ((breakerAt === null && !current.idle) || rawAt === null) {
    const trial = current;
    setTimeout(() => {
      if (reported || current !== trial) return;
      reported = true;
      send({ type: 'saw', name: trial.name, breakerAt, rawAt, serverAt });
    }, 2_000).unref();
    return;
  }
  reported = true;
  send({ type: 'saw', name: current.name, breakerAt, rawAt, serverAt });
}

subscriber.on('message', (_channel: string, text: string) => {
  if (current === null || rawAt !== null) return;
  const message = JSON.parse(text) as { key?: string; to?: string; now?: number };
  if (message.key === current.key && message.to === 'open') {
    rawAt = wallMs();
    serverAt = message.now ?? null;
    report();
  }
});

function tick(): void {
  const trial = current;
  // At most a few calls in flight: a slow round trip must not pile up calls.
  if (trial === null || trial.idle || inFlight >= 4) return;
  inFlight += 1;
  calls += 1;
  trial.breaker.execute(noop).then(
    () => {
      inFlight -= 1;
      trial.successes += 1;
      if (!readySent && trial === current && trial.successes >= 5) {
        readySent = true;
        send({ type: 'ready', name: trial.name });
      }
    },
    (error: unknown) => {
      inFlight -= 1;
      if (trial !== current || breakerAt !== null) return;
      if (isCircuitOpenError(error)) {
        breakerAt = wallMs();
        report();
      }
    },
  );
}

process.on('message', (message: FromParent) => {
  if (message.type === 'warm') {
    current = {
      name: message.name,
      key: breakerKey(prefix, message.name),
      breaker: factory.breakerFor(message.name),
      successes: 0,
      idle: message.idle,
    };
    readySent = message.idle;
    if (message.idle) send({ type: 'ready', name: message.name });
    breakerAt = rawAt = serverAt = null;
    reported = false;
  } else if (message.type === 'stop') {
    clearInterval(timer);
    loopDelay.disable();
    send({
      type: 'stopped',
      calls,
      loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
      loopDelayMaxMs: loopDelay.max / 1e6,
    });
    void factory.close().then(() => {
      subscriber.disconnect();
      client.disconnect();
      process.exit(0);
    });
  }
});

await subscriber.subscribe(eventsChannel(prefix));
// The factory subscribes on its first breaker: make one and give the subscription time to land.
await factory.breakerFor('warm-up').execute(noop);
await new Promise((resolve) => setTimeout(resolve, 200));
loopDelay.enable();
const timer = setInterval(tick, 1);
send({ type: 'started' });
