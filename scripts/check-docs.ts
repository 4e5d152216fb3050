// Type-checks every ```ts block of README.md and docs/*.md under the project's strict settings, as
// a user would paste it: `circuitry` and its subpaths resolve to this package's sources (from
// package.json's exports). Run by `npm test` (`npm run check:docs`).
//
// A block is a fragment, so the names it uses without defining (the user's `logger`, `worker`,
// `factory`...) are declared first from the list below, each only when the block does not define
// it. Two markers, an HTML comment on the line just before the fence, adjust one block:
//   <!-- check-docs: skip -->               not checked (say why in the text around it)
//   <!-- check-docs: declare <TypeScript> -->  more declarations for this block only
// Errors are reported at the Markdown line they come from.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');

/** Names the snippets use as given: the reader's own objects, declared with the type they have. */
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
  server: "declare const server: import('node:http').Server;",
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

interface Block {
  readonly doc: string;
  /** Line of the block's first code line in the Markdown file (1-based). */
  readonly line: number;
  readonly code: string;
  readonly declare: string;
}

/** `circuitry/<subpath>` to its source, from package.json's exports (`dist/x.d.ts` is `src/x.ts`). */
export function sourcePaths(): Record<string, string[]> {
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

export function docFiles(): string[] {
  const docs = readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => join('docs', f));
  return ['README.md', ...docs];
}

export function blocksOf(doc: string): Block[] {
  const lines = readFileSync(join(root, doc), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[i]!)) continue;
    const marker = /^<!--\s*check-docs:\s*(skip|declare)\b([\s\S]*?)-->\s*$/.exec(lines[i - 1] ?? '');
    const end = lines.findIndex((line, j) => j > i && /^```\s*$/.test(line));
    if (end === -1) throw new Error(`${doc}:${i + 1}: a \`\`\`ts block is never closed`);
    if (marker?.[1] !== 'skip') {
      blocks.push({
        doc,
        line: i + 2,
        code: lines.slice(i + 1, end).join('\n'),
        declare: marker?.[1] === 'declare' ? marker[2]!.trim() : '',
      });
    }
    i = end;
  }
  return blocks;
}

function defines(code: string, name: string): boolean {
  return new RegExp(
    `(const|let|function|class|interface|type)\\s+${name}\\b|import[^;]*\\b${name}\\b[^;]*from`,
  ).test(code);
}

/** Type-checks the blocks; resolves with the errors, each at its Markdown line. */
export function checkDocs(docs: readonly string[] = docFiles()): { blocks: number; errors: string[] } {
  const blocks = docs.flatMap(blocksOf);
  const dir = join(root, '.tmp', 'docs-snippets');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const origin = new Map<string, { block: Block; offset: number }>();
  const files = blocks.map((block) => {
    const prelude = [
      ...Object.entries(FREE)
        .filter(([name]) => new RegExp(`\\b${name}\\b`).test(block.code) && !defines(block.code, name))
        .map(([, declaration]) => declaration),
      block.declare,
    ].join('\n');
    const name = `${block.doc.replace(/[/.]/g, '_')}-${block.line}.ts`;
    // The prelude goes on one line so that the code's lines map to the Markdown's by one offset.
    writeFileSync(join(dir, name), `${prelude.replaceAll('\n', ' ')}\n${block.code}\nexport {};\n`);
    origin.set(name, { block, offset: block.line - 2 });
    return join(dir, name);
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
        // Snippets show one step each: a name they import for the reader's benefit is not an error.
        noUnusedLocals: false,
      },
      files,
    }),
  );
  let output = '';
  try {
    execFileSync(
      process.execPath,
      [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir, '--pretty', 'false'],
      {
        encoding: 'utf8',
        stdio: 'pipe',
      },
    );
  } catch (error) {
    output = (error as { stdout?: string }).stdout ?? String(error);
  }
  const errors = output
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const match = /^(?:.*[\\/])?([^\\/(]+\.ts)\((\d+),(\d+)\): (.*)$/.exec(line);
      const at = match === null ? undefined : origin.get(match[1]!);
      if (match === null || at === undefined) return line;
      const mdLine =
        Number(match[2]) === 1 ? `${at.block.line - 1} (declarations)` : `${Number(match[2]) + at.offset}`;
      return `${at.block.doc}:${mdLine}:${match[3]}: ${match[4]}`;
    });
  return { blocks: blocks.length, errors };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const docs =
    process.argv.length > 2 ? process.argv.slice(2).map((f) => relative(root, resolve(f))) : docFiles();
  const { blocks, errors } = checkDocs(docs);
  if (errors.length > 0) {
    console.error(
      `${errors.length} error(s) in the TypeScript blocks of ${docs.join(', ')}:\n${errors.join('\n')}`,
    );
    process.exit(1);
  }
  console.log(`check-docs: ${blocks} TypeScript block(s) in ${docs.length} file(s) type-check`);
}
