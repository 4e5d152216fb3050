import { describe } from 'node:test';

import { describeModelCheck } from '../../src/testing/model-check.js';
import { memoryHarness } from '../helpers/model-harnesses.js';

describe('MemoryStore', () => {
  // An in-process store cannot lose a reply.
  describeModelCheck('MemoryStore', memoryHarness, { faults: ['failed-write', 'late-reply'] });
});
