import type { IncomingMessage, ServerResponse } from 'node:http';

import { internal } from './breaker.js';
import type { BreakerFactory } from './factory.js';
import { eachBreaker } from './factory.js';
import type { MetricState } from './metrics-export.js';
import { stateOf } from './metrics-export.js';
import { invalid } from './options.js';

/** A breaker as the health handler sees it: this process's view, no store call. */
export interface BreakerStatus {
  /** The breaker's name. */
  readonly name: string;
  /** The base name it was made for. */
  readonly baseName: string;
  /** Its state as this process knows it: the override when there is one, else the computed state. */
  readonly state: MetricState;
  /** How long until an open breaker admits a call again, as this process knows it (0 if not known). */
  readonly retryAfterMs: number;
}

/** Options of `healthHandler`. */
export interface HealthHandlerOptions {
  /**
   * Whether a breaker that is not closed (open, half-open, forced open) may be so while the
   * service is healthy. Per-tenant breakers usually may: one tenant's outage is not the
   * service's. @defaultValue none may: any such breaker answers 503
   */
  readonly allowOpen?: (breaker: BreakerStatus) => boolean;
}

/** The JSON body the handler answers. */
export interface HealthBody {
  /** True when every breaker is closed or allowed not to be (`allowOpen`); false answers 503. */
  readonly healthy: boolean;
  /** How many breakers this process holds. */
  readonly breakers: number;
  /** The breakers that are not closed (open, half-open, forced open), allowed or not. */
  readonly notClosed: readonly (BreakerStatus & {
    /** Whether `allowOpen` allowed it not to be closed. */
    readonly allowed: boolean;
  })[];
}

/**
 * A `(req, res)` handler for `node:http` or Express answering a health check from the breakers
 * this process holds (its local view, so it costs no store call): `200` and JSON when every
 * breaker is closed (or allowed by `allowOpen` not to be), `503` otherwise.
 */
export function healthHandler<Context>(
  factory: BreakerFactory<Context>,
  options: HealthHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const allowOpen = options.allowOpen ?? (() => false);
  if (typeof allowOpen !== 'function') throw invalid('allowOpen', 'a function', allowOpen);
  return (_req, res) => {
    const body = healthOf(factory, allowOpen);
    res.statusCode = body.healthy ? 200 : 503;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.setHeader('cache-control', 'no-store');
    res.end(JSON.stringify(body));
  };
}

/** What `healthHandler` answers, as data. */
export function healthOf<Context>(
  factory: BreakerFactory<Context>,
  allowOpen: (breaker: BreakerStatus) => boolean = () => false,
): HealthBody {
  let count = 0;
  const notClosed: (BreakerStatus & { allowed: boolean })[] = [];
  for (const breaker of factory[eachBreaker]()) {
    count += 1;
    const state = stateOf(breaker);
    if (state === 'closed' || state === 'forced-closed' || state === 'metrics-only') continue;
    const status: BreakerStatus = {
      name: breaker.name,
      baseName: breaker.baseName,
      state,
      retryAfterMs: breaker[internal].view().retryAfterMs,
    };
    let allowed: boolean;
    try {
      allowed = allowOpen(status) === true;
    } catch {
      allowed = false; // a throwing rule allows nothing
    }
    notClosed.push({ ...status, allowed });
  }
  return { healthy: notClosed.every((b) => b.allowed), breakers: count, notClosed };
}
