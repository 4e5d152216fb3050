/**
 * The library as tsc builds it (what users run), in a temporary directory of its own (dist/ is left
 * alone). The bench otherwise runs src through tsx, whose esbuild `keepNames` gives every named
 * closure a property store of its own: about 250 B more per closure, and on this machine the
 * closed path about 10% slower than the compiled library.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type * as Circuitry from '../src/index.js';

let building: Promise<string> | null = null;

export function run(args: readonly string[]): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    execFile(process.execPath, args, { maxBuffer: 1 << 20, timeout: 600_000 }, (error, out) => {
      if (error !== null) reject(new Error(`node ${args.join(' ')} failed`, { cause: error }));
      else resolve(out);
    });
  });
}

/** The file URL of the compiled `index.js`, building it on first use. */
export function compiledIndex(): Promise<string> {
  building ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuitry-bench-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const project = fileURLToPath(new URL('../tsconfig.build.json', import.meta.url));
    await run([tsc, '-p', project, '--outDir', dir]);
    // ES modules for Node itself: without this tsx would load them, converting them with keepNames.
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    return pathToFileURL(join(dir, 'index.js')).href;
  })();
  return building;
}

export async function compiledLibrary(): Promise<typeof Circuitry> {
  return (await import(await compiledIndex())) as typeof Circuitry;
}
