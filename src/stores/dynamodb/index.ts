export { DynamoDBStore, createBreakerTable } from './dynamodb-store.js';
export type {
  CreateBreakerTableOptions,
  CreateBreakerTableResult,
  DynamoDBStoreOptions,
} from './dynamodb-store.js';
