// A node:test reporter for scripts/run-tests.mjs: one line per test file (pass/fail, test count,
// duration), each failure in full (the test's name, where it is, the error, expected/actual, the
// stack) and a closing summary. What a test file prints (its stdout and stderr, including the
// process warnings a test provokes on purpose) goes to that file's log, not to the console; a
// failing file's line names its log. The summary ends with the same `# tests N` ... `# fail N`
// lines as node's TAP reporter, which .ci/run reads.
//
// Node 20 and Node 22+ report a file differently (the file-level entry is named by its absolute or
// its relative path, and its tests sit one level below it or beside it), so a file is recognised
// by its path and its tests by the `file` field of their events.
import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { inspect } from 'node:util';

const root = resolve(import.meta.dirname, '..');
const logDir = process.env.CIRCUITRY_TEST_LOG_DIR ?? join(root, '.tmp', 'test-logs');

function seconds(ms) {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

function indent(text, prefix = '    ') {
  return text
    .split('\n')
    .map((line) => (line === '' ? line : prefix + line))
    .join('\n');
}

/** The error a test threw: node wraps it in an ERR_TEST_FAILURE whose `cause` is the original. */
function describeFailure(error) {
  if (error === undefined || error === null) return 'failed (no error reported)';
  const thrown = error.code === 'ERR_TEST_FAILURE' && error.cause !== undefined ? error.cause : error;
  if (typeof thrown === 'string') return thrown;
  if (typeof thrown !== 'object' || thrown === null) return inspect(thrown);
  const lines = [];
  const message = typeof thrown.message === 'string' ? thrown.message : inspect(thrown);
  const name = typeof thrown.name === 'string' && thrown.name !== 'Error' ? `${thrown.name}: ` : '';
  lines.push(`${name}${message}`);
  if (thrown.code !== undefined && thrown.code !== 'ERR_ASSERTION')
    lines.push(`code: ${String(thrown.code)}`);
  // An assertion with a message of its own does not show the values; one node generated does.
  if ('expected' in thrown && 'actual' in thrown && thrown.generatedMessage !== true) {
    lines.push(`expected: ${inspect(thrown.expected, { depth: 6 })}`);
    lines.push(`actual:   ${inspect(thrown.actual, { depth: 6 })}`);
  }
  if (typeof thrown.stack === 'string') {
    // node's own frames (the test runner's) say nothing about the failure.
    const frames = thrown.stack
      .split('\n')
      .filter((line) => /^\s+at /.test(line) && !/\(node:|at node:|at async Promise\.all/.test(line));
    if (frames.length > 0) lines.push(frames.map((line) => line.trim()).join('\n'));
  }
  if (thrown.cause !== undefined) lines.push(`cause: ${inspect(thrown.cause, { depth: 4 })}`);
  return lines.join('\n');
}

/** Where the test failed: the first stack frame in its file (tsx's source maps make node's own
 * line and column of a test point into the compiled code). */
function locate(error, data) {
  // The file that registered the test: a test file, or a suite it calls (src/testing/*.ts).
  const name = relative(root, resolve(root, data.file));
  const thrown = error?.cause ?? error;
  const stack = typeof thrown?.stack === 'string' ? thrown.stack : '';
  const frame = stack.split('\n').find((line) => line.includes(name));
  const match = frame === undefined ? null : /:(\d+):(\d+)\)?\s*$/.exec(frame);
  if (match !== null) return `${name}:${match[1]}:${match[2]}`;
  return data.line === undefined ? name : `${name}:${data.line}:${data.column}`;
}

export default async function* reporter(source) {
  mkdirSync(logDir, { recursive: true });
  const files = new Map(); // absolute path -> per-file state
  const order = [];
  const totals = { files: 0, failedFiles: 0, tests: 0, failed: 0 };
  const failures = [];
  const summaryLines = [];
  const startedAt = Date.now();

  /** The test file running now: files run one at a time (`--test-concurrency=1`). */
  let running;

  function fileOf(data) {
    const path = data.file === undefined ? undefined : resolve(root, data.file);
    if (path === undefined) return undefined;
    // A test registered by a module the test file calls (the conformance suite and the model check
    // in src/testing/) names that module as its file: it counts, and takes its time, in the test
    // file that ran it.
    if (!path.endsWith('.test.ts') && running !== undefined && !running.done) return running;
    let state = files.get(path);
    if (state === undefined) {
      const name = relative(root, path);
      state = {
        name,
        log: join(logDir, `${name.replaceAll(/[\\/]/g, '__')}.log`),
        firstAt: undefined,
        durationMs: undefined,
        tests: 0,
        failed: 0,
        skipped: 0,
        todo: 0,
        stack: [],
        stderrTail: [],
        failures: [],
        done: false,
      };
      files.set(path, state);
      writeFileSync(state.log, `# ${name}\n`);
    }
    state.firstAt ??= Date.now();
    if (path.endsWith('.test.ts')) running = state;
    return state;
  }

  /** The file-level entry node makes for each file it runs (Node 20: absolute path, later: relative). */
  function isFileEntry(data) {
    return (
      data.nesting === 0 && data.file !== undefined && resolve(root, data.name) === resolve(root, data.file)
    );
  }

  function finish(state, durationMs) {
    if (state.done) return '';
    state.done = true;
    state.durationMs = durationMs ?? Date.now() - state.firstAt;
    order.push(state);
    totals.files += 1;
    totals.tests += state.tests;
    totals.failed += state.failed;
    let line;
    const count = `${state.tests} test${state.tests === 1 ? '' : 's'}`;
    const extra = [
      state.skipped > 0 ? `${state.skipped} skipped` : '',
      state.todo > 0 ? `${state.todo} todo` : '',
    ]
      .filter(Boolean)
      .join(', ');
    if (state.failed === 0) {
      line = `✔ ${state.name}  ${count}${extra ? ` (${extra})` : ''}  ${seconds(state.durationMs)}\n`;
    } else {
      totals.failedFiles += 1;
      line = `✖ ${state.name}  ${state.failed} of ${count} failed  ${seconds(state.durationMs)}  (log: ${relative(process.cwd(), state.log)})\n`;
      for (const failure of state.failures) {
        failures.push(`${state.name} › ${failure.title}`);
        line += `\n  ✖ ${failure.title}  (${failure.where})\n${indent(failure.text)}\n`;
      }
      line += '\n';
    }
    appendFileSync(
      state.log,
      `# ${state.failed === 0 ? 'passed' : 'FAILED'}: ${count} in ${seconds(state.durationMs)}\n`,
    );
    return line;
  }

  for await (const event of source) {
    const { type, data } = event;
    switch (type) {
      case 'test:stdout':
      case 'test:stderr': {
        const state = fileOf(data);
        if (state === undefined) {
          yield data.message;
          break;
        }
        appendFileSync(state.log, data.message);
        if (type === 'test:stderr') {
          state.stderrTail.push(data.message);
          if (state.stderrTail.length > 40) state.stderrTail.shift();
        }
        break;
      }
      case 'test:dequeue': {
        // A file about to run (its tests' events follow): the file running now, for the tests
        // that other modules register (see `fileOf`), even before a test of its own has run.
        if (isFileEntry(data)) fileOf(data);
        break;
      }
      case 'test:start': {
        if (data.file === undefined || isFileEntry(data)) break;
        const state = fileOf(data);
        state.stack.length = data.nesting;
        state.stack[data.nesting] = data.name;
        break;
      }
      case 'test:pass':
      case 'test:fail': {
        if (data.file === undefined) break;
        const state = fileOf(data);
        const fileEntry = isFileEntry(data);
        const details = data.details ?? {};
        const error = details.error;
        // A suite that failed because a test in it did, or a file for the same reason, is not a
        // failure of its own; a suite whose hook threw, or a file that did not load, is.
        if (details.type === 'suite' || fileEntry) {
          if (type === 'test:pass' || error?.failureType === 'subtestsFailed') break;
        }
        const path = fileEntry ? [] : [...state.stack.slice(0, data.nesting), data.name];
        const title = fileEntry ? '(the file itself)' : path.join(' › ');
        state.tests += 1;
        if (data.skip !== undefined || details.skip !== undefined) state.skipped += 1;
        if (data.todo !== undefined || details.todo !== undefined) state.todo += 1;
        const result = type === 'test:pass' ? 'ok' : 'FAIL';
        appendFileSync(state.log, `# ${result} ${title} (${Math.round(details.duration_ms ?? 0)} ms)\n`);
        if (type === 'test:fail') {
          state.failed += 1;
          let text = describeFailure(error);
          if (fileEntry) {
            const tail = state.stderrTail
              .join('')
              .replaceAll(/\n{3,}/g, '\n\n')
              .trimEnd();
            text = `the file failed outside its tests (it did not load, or its process exited early)`;
            if (tail !== '') text += `; its last lines of stderr:\n${indent(tail, '  ')}`;
          }
          const where = locate(error, data);
          state.failures.push({ title, where, text });
          appendFileSync(state.log, `${indent(text)}\n`);
        }
        // A file that failed on its own reports its completion first, then its failure.
        if (fileEntry) yield finish(state, details.duration_ms);
        break;
      }
      case 'test:complete': {
        if (data.file === undefined || !isFileEntry(data)) break;
        const error = data.details?.error;
        if (data.details?.passed === true || error?.failureType === 'subtestsFailed')
          yield finish(fileOf(data), data.details?.duration_ms);
        break;
      }
      case 'test:diagnostic': {
        // The run's closing counts ("tests 12", "fail 0", ...) are diagnostics at the top level
        // without a file; a file's own diagnostics go to its log.
        if (data.file === undefined && data.nesting === 0) summaryLines.push(`# ${data.message}`);
        else {
          const state = fileOf(data);
          if (state !== undefined) appendFileSync(state.log, `# ${data.message}\n`);
        }
        break;
      }
      default:
        break;
    }
  }

  let out = '';
  for (const state of files.values()) out += finish(state);
  out += `\n${totals.files} file${totals.files === 1 ? '' : 's'}, ${totals.tests} tests, `;
  out +=
    totals.failed === 0
      ? 'all passed'
      : `${totals.failed} failed in ${totals.failedFiles} file${totals.failedFiles === 1 ? '' : 's'}`;
  out += `, ${seconds(Date.now() - startedAt)}; logs in ${relative(process.cwd(), logDir) || '.'}\n`;
  if (failures.length > 0) out += `failed:\n${failures.map((f) => `  ✖ ${f}\n`).join('')}`;
  out += `${summaryLines.join('\n')}\n`;
  yield out;
}
