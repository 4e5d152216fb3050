// Runs every test/**/*.test.ts with node's test runner under tsx. Node 20's `--test` does not
// expand globs, so the files are listed here. Extra arguments narrow the run to files whose path
// contains one of them (`npm run test:unit -- redis breaker`); an argument starting with `!`
// leaves out the files whose path contains the rest (`npm run test:unit -- '!demo'`).
//
// The console shows one line per file, failures in full and a summary (scripts/test-reporter.mjs);
// what each file printed is in .tmp/test-logs/<file>.log and the whole run as TAP in
// .tmp/test-logs/run.tap (another directory with CIRCUITRY_TEST_LOG_DIR). The summary ends with
// node's `# tests N` / `# fail N` lines (.ci/run reads them).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = join(import.meta.dirname, '..');
const filters = process.argv.slice(2).filter((f) => !f.startsWith('!'));
const excluded = process.argv
  .slice(2)
  .filter((f) => f.startsWith('!'))
  .map((f) => f.slice(1));

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return walk(path);
    return entry.name.endsWith('.test.ts') ? [relative(root, path)] : [];
  });
}

const files = walk(join(root, 'test'))
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .filter((file) => !excluded.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${process.argv.slice(2).join(', ')}`);
  process.exit(1);
}
// A failing test must not hang the run: each test times out, and the whole run too (a file
// that a failed test left busy, with a timer or a connection, would otherwise keep it alive).
// Not --test-force-exit: on Node 24 it ends a file before all of its tests have run, silently.
// The whole suite takes ~12 minutes alone and ~14 with CI's other passes beside it (819–824 s).
const LIMIT_MS = Number(process.env.TEST_RUN_LIMIT_MS ?? 16 * 60_000);
// Another directory with CIRCUITRY_TEST_LOG_DIR: .ci/run runs two passes side by side.
const logDir = process.env.CIRCUITRY_TEST_LOG_DIR ?? join(root, '.tmp', 'test-logs');
rmSync(logDir, { recursive: true, force: true });
mkdirSync(logDir, { recursive: true });
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=1',
    '--test-timeout=120000',
    `--test-reporter=${pathToFileURL(join(root, 'scripts', 'test-reporter.mjs')).href}`,
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${join(logDir, 'run.tap')}`,
    ...files,
  ],
  {
    cwd: root,
    stdio: 'inherit',
    timeout: LIMIT_MS,
    killSignal: 'SIGKILL',
    // A passing run is quiet: the AWS SDK warns about Node 20 in every process that loads it.
    env: {
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      CIRCUITRY_TEST_LOG_DIR: logDir,
      ...process.env,
    },
  },
);
if (result.error !== undefined) {
  console.error(
    `the test run did not finish within ${LIMIT_MS / 60_000} minutes: ${result.error.message} (what ran is in ${relative(process.cwd(), logDir)})`,
  );
  process.exit(1);
}
process.exit(result.status ?? 1);
