// A process for the quorum tests across processes (test/helpers/quorum-fleet.ts): one
// BreakerFactory on a shared store, with or without a quorum, that runs calls when told (each
// failing or not) and reports what happened to each.
import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../../src/index.js';
import { openStore } from './store-spec.js';
import type { StoreSpec } from './store-spec.js';

const [specJson, quorumJson] = process.argv.slice(2) as [string, string];
const quorum = JSON.parse(quorumJson) as { minReporters: number; minFraction: number } | false;
const { store, disconnect } = openStore(JSON.parse(specJson) as StoreSpec);
const factory = new BreakerFactory({
  store,
  // Generous: four processes share two busy cores, and a timed-out write would open the
  // process's local fallback instead of testing the store.
  storeTimeoutMs: 5_000,
  trip: consecutiveFailures(5),
  openMs: 60_000,
  quorum,
  onStateChange: (name, _context, from, to, info) =>
    process.send!({ transition: { name, from, to, local: info.local } }),
});

process.on(
  'message',
  (message: { cmd: string; name: string; calls: number; fail: boolean; delayMs: number }) => {
    if (message.cmd === 'stop') {
      void factory.close().then(() => {
        disconnect();
        process.exit(0);
      });
      return;
    }
    void (async () => {
      const tally = { ran: 0, failed: 0, reasons: {} as Record<string, number> };
      const breaker = factory.breakerFor(message.name);
      for (let i = 0; i < message.calls; i++) {
        try {
          await breaker.execute(async () => {
            tally.ran += 1;
            await new Promise((resolve) => setTimeout(resolve, message.delayMs));
            if (message.fail) throw new Error('sick');
          });
        } catch (error) {
          if (isCircuitOpenError(error)) tally.reasons[error.reason] = (tally.reasons[error.reason] ?? 0) + 1;
          else tally.failed += 1;
        }
      }
      await breaker.flush();
      process.send!({ tally });
    })();
  },
);
process.send!({ ready: true });
