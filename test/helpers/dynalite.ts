import { Server as HttpServer } from 'node:http';
import type { Server } from 'node:http';

import { after, before } from 'node:test';

import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';

import { createBreakerTable } from '../../src/stores/dynamodb/index.js';
import { freePort } from './redis-server.js';

/**
 * dynalite (a DynamoDB implementation on LevelDB in memory) in this process, on a free port;
 * `stop()` then `restart()` brings it back on the same port, empty, as an outage would.
 */
export class Dynalite {
  #server: Server | null = null;
  private constructor(readonly port: number) {}

  static async start(): Promise<Dynalite> {
    const d = new Dynalite(await freePort());
    await d.restart();
    return d;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A client for this server, with dummy credentials and no retries (tests want failures fast). */
  client(): DynamoDBClient {
    return new DynamoDBClient({
      endpoint: this.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
  }

  /** A client that answers a failed condition with the item, as DynamoDB does (`answerWithItem`). */
  awsLikeClient(): DynamoDBClient {
    const client = this.client();
    answerWithItem(client, this.client());
    return client;
  }

  async restart(): Promise<void> {
    const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (server === null) return;
    // The plain HTTP close, not dynalite's: its own also closes the database under requests still
    // in flight, which then fail after the test ("Database is closed"). An outage is the server
    // going away; the in-memory database is dropped with it.
    server.closeAllConnections();
    await new Promise<void>((resolve) => HttpServer.prototype.close.call(server, () => resolve()));
  }
}

/**
 * Makes `client` answer a failed condition as DynamoDB does when asked
 * (`ReturnValuesOnConditionCheckFailure: 'ALL_OLD'`): the error carries the item. dynalite ignores
 * the option; here a consistent read on `reader` fills it in after the failure (not at the same
 * instant, as DynamoDB's is: a write of another process may land between, which a store must take
 * as it takes any item it read). `client.destroy()` destroys `reader` too.
 */
export function answerWithItem(client: DynamoDBClient, reader: DynamoDBClient): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        const input = args.input as {
          TableName?: string;
          Key?: Record<string, AttributeValue>;
          ReturnValuesOnConditionCheckFailure?: string;
        };
        const failed = error as { name?: string; Item?: Record<string, AttributeValue> };
        if (
          failed.name === 'ConditionalCheckFailedException' &&
          input.ReturnValuesOnConditionCheckFailure === 'ALL_OLD' &&
          failed.Item === undefined
        ) {
          const { Item } = await reader.send(
            new GetItemCommand({ TableName: input.TableName, Key: input.Key, ConsistentRead: true }),
          );
          if (Item !== undefined) failed.Item = Item;
        }
        throw error;
      }
    },
    { step: 'initialize' },
  );
  const destroy = client.destroy.bind(client);
  client.destroy = () => {
    reader.destroy();
    destroy();
  };
}

/**
 * Starts dynalite with a breaker table `table` before the suite's tests and stops it after; `use`
 * receives the server and a client of it (destroyed at the end).
 */
export function useDynalite(table: string, use: (server: Dynalite, client: DynamoDBClient) => void): void {
  let server: Dynalite | undefined;
  let client: DynamoDBClient | undefined;
  before(async () => {
    server = await Dynalite.start();
    client = server.client();
    await createBreakerTable(client, table);
    use(server, client);
  });
  after(async () => {
    client?.destroy();
    await server?.stop();
  });
}
