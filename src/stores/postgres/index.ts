export { PostgresStore } from './postgres-store.js';
export type { PostgresStoreOptions } from './postgres-store.js';
export { createBreakerSchema } from './create-schema.js';
export type { CreateBreakerSchemaOptions, CreateBreakerSchemaResult } from './create-schema.js';
export { schemaSql } from './schema.js';
export type { QualifiedTable } from './schema.js';
