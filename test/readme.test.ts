import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';

// Every TypeScript snippet of the README type-checks under the project's strict settings, as a
// user would paste it: imports of `circuitry` resolve to this package's sources. A snippet is a
// fragment, so the names it uses without defining (the user's own `logger`, `Job`, `worker`...)
// are declared first, each only when the snippet does not define it itself.

const root = resolve(import.meta.dirname, '..');

const FREE: Record<string, string> = {
  logger: 'declare const logger: { debug(fields: object, message: string): void };',
  Job: 'interface Job { readonly tenantId: string }',
  syncInvoices: 'declare function syncInvoices(job: unknown, signal: AbortSignal): Promise<void>;',
  deferJob: 'declare function deferJob(job: Job, delayMs: number): Promise<void>;',
  factory: "declare const factory: import('circuitry').BreakerFactory<{ tenantId: string }>;",
  breaker: "declare const breaker: import('circuitry').CircuitBreaker;",
  doTheWork: 'declare function doTheWork(): Promise<void>;',
  connection: "declare const connection: import('ioredis').Redis;",
  worker: 'declare const worker: { close(): Promise<void> };',
  redis: "declare const redis: import('ioredis').Redis;",
  MyStore: `type StoreOfCircuitry = import('circuitry').Store;
  declare class MyStore implements StoreOfCircuitry {
    constructor(options: { clock: import('circuitry').Clock });
    acquire: import('circuitry').Store['acquire'];
    record: import('circuitry').Store['record'];
    inspect: import('circuitry').Store['inspect'];
    force: import('circuitry').Store['force'];
    list: import('circuitry').Store['list'];
    spoil(key: string, kind: string): void;
  }`,
};

/** `circuitry/<subpath>` to its source, from package.json's exports (`dist/x.d.ts` is `src/x.ts`). */
function sourcePaths(): Record<string, string[]> {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    exports: Record<string, string | { types?: string }>;
  };
  const paths: Record<string, string[]> = {};
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'string' || target.types === undefined) continue;
    const name = subpath === '.' ? 'circuitry' : `circuitry/${subpath.slice(2)}`;
    paths[name] = [target.types.replace(/^\.\/dist\//, 'src/').replace(/\.d\.ts$/, '.ts')];
  }
  return paths;
}

function snippets(): string[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

function defines(code: string, name: string): boolean {
  return new RegExp(
    `(const|let|function|class|interface|type)\\s+${name}\\b|import[^;]*\\b${name}\\b[^;]*from`,
  ).test(code);
}

describe('the README', { timeout: 120_000 }, () => {
  it('has TypeScript snippets that type-check under strict', () => {
    const blocks = snippets();
    assert.ok(blocks.length >= 5, `found ${blocks.length} snippets`);
    const dir = join(root, '.tmp', 'readme-snippets');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const files = blocks.map((code, i) => {
      const prelude = Object.entries(FREE)
        .filter(([name]) => new RegExp(`\\b${name}\\b`).test(code) && !defines(code, name))
        .map(([, declaration]) => declaration);
      const file = join(dir, `snippet-${i + 1}.ts`);
      writeFileSync(file, `${prelude.join('\n')}\n${code}\nexport {};\n`);
      return file;
    });
    const base = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8')) as {
      compilerOptions: Record<string, unknown>;
    };
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          ...base.compilerOptions,
          noEmit: true,
          rootDir: root,
          baseUrl: root,
          paths: sourcePaths(),
        },
        files,
      }),
    );
    try {
      execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], {
        encoding: 'utf8',
        stdio: 'pipe',
      });
    } catch (error) {
      assert.fail(
        `README snippets do not type-check:\n${(error as { stdout?: string }).stdout ?? String(error)}`,
      );
    }
  });
});
