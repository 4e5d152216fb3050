import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';

import { anySignal, closingSignal } from '../../src/bullmq/signals.js';
import type { WorkerHandle } from '../../src/bullmq/signals.js';

describe('bullmq signals', () => {
  it('a worker running more than 10 jobs at once gives no MaxListenersExceededWarning on its closing signal', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const emitter = new EventEmitter();
      const worker = Object.assign(emitter, {
        closing: undefined,
        rateLimit: async () => undefined,
      }) as unknown as WorkerHandle;
      const closing = closingSignal(worker);
      const jobs = Array.from({ length: 50 }, () => anySignal([new AbortController().signal, closing]));
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.filter((w) => w.name === 'MaxListenersExceededWarning'),
        [],
      );
      emitter.emit('closing');
      assert.ok(
        jobs.every((job) => job.signal?.aborted === true),
        'every job hears the close',
      );
      for (const job of jobs) job.dispose();
    } finally {
      process.off('warning', onWarning);
    }
  });
});
