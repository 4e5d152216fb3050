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
  // Known to fail with three processes' writes racing a trip of a window policy (docs/dynamodb.md,
  // "Known limits"): cross-client steps of two clients only, until that trip is made atomic with
  // the count that causes it. Under consecutiveFailures it holds with three (checked below).
  describeModelCheck('DynamoDBStore', () => dynamoHarness(server.endpoint, TABLE), { crossClient: 'pairs' });
  describeModelCheck('DynamoDBStore, consecutiveFailures', () => dynamoHarness(server.endpoint, TABLE), {
    policies: ['consecutive-failures'],
  });
});
