import { PostgresStore } from '../../src/stores/postgres/index.js';
import { POSTGRES, usePostgresSchema } from '../helpers/postgres.js';
import { describeQuorumFleet } from '../helpers/quorum-fleet.js';

describeQuorumFleet('Postgres', () => {
  let store: PostgresStore;
  let table: string;
  usePostgresSchema((s) => {
    table = s.table;
    store = new PostgresStore({ pool: s.pool, table });
  });
  return {
    spec: () => ({ kind: 'postgres', connection: POSTGRES, table }),
    inspect: (name, policy) => Promise.resolve(store.inspect(name, policy)),
  };
});
