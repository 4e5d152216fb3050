import { describe } from 'node:test';

import { describeModelCheck } from '../../src/testing/model-check.js';
import { useDynalite } from '../helpers/dynalite.js';
import type { Dynalite } from '../helpers/dynalite.js';
import { dynamoHarness } from '../helpers/model-harnesses.js';

const TABLE = 'circuitry-model-check';

describe('DynamoDBStore on dynalite', () => {
  let server: Dynalite;
  useDynalite(TABLE, (s) => {
    server = s;
  });
  describeModelCheck('DynamoDBStore', () => dynamoHarness(server.endpoint, TABLE));
});
