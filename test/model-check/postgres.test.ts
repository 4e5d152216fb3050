import { describe } from 'node:test';

import { describeModelCheck } from '../../src/testing/model-check.js';
import { POSTGRES, usePostgresSchema } from '../helpers/postgres.js';
import { postgresHarness } from '../helpers/model-harnesses.js';

describe('PostgresStore', () => {
  let table: string;
  usePostgresSchema((s) => {
    table = s.table;
  });
  describeModelCheck('PostgresStore', () => postgresHarness(POSTGRES, table));
});
