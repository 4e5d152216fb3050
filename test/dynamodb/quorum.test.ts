import { DynamoDBStore } from '../../src/stores/dynamodb/index.js';
import { useDynalite } from '../helpers/dynalite.js';
import type { Dynalite } from '../helpers/dynalite.js';
import { describeQuorumFleet } from '../helpers/quorum-fleet.js';

const TABLE = 'circuitry-quorum';

describeQuorumFleet('DynamoDB (dynalite)', () => {
  let server: Dynalite;
  let store: DynamoDBStore;
  useDynalite(TABLE, (s, client) => {
    server = s;
    store = new DynamoDBStore({ client, tableName: TABLE });
  });
  return {
    spec: () => ({ kind: 'dynamodb', endpoint: server.endpoint, table: TABLE }),
    inspect: (name, policy) => Promise.resolve(store.inspect(name, policy)),
    mergesWrites: true,
  };
});
