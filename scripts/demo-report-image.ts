/**
 * `npm run demo:image`: regenerates docs/demo-report.png, the picture of the demo's HTML report in
 * docs/demo.md. Runs the demo (`src/demo/cli.ts`, as `npm start` does) with `--html` to a temporary
 * file, opens that page in headless Chromium and saves a screenshot of the whole page: the
 * comparison table, then each run's breaker states and throughput side by side.
 *
 *   npm run demo:image -- [demo options] [--out FILE] [--width PX]
 *
 * The demo options go to the demo as they are (`--seed 2`, `--bullmq`...); `--out` (default
 * docs/demo-report.png) and `--width` (default 1280, the window the report fills) are this
 * script's. Needs Chromium at /usr/bin/chromium (`apt-get install chromium`), or at
 * CHROMIUM_PATH. The demo's figures vary from run to run: look at the image before committing it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, CHROMIUM_PATH } from './chromium.js';

const root = resolve(import.meta.dirname, '..');

const USAGE = `npm run demo:image -- [demo options] [--out FILE] [--width PX]
  Runs the demo (npm start -- --help lists its options) and saves a screenshot of its HTML report.
  --out FILE   the PNG to write (default docs/demo-report.png)
  --width PX   the browser window's width, which the report fills (default 1280)
  Chromium: /usr/bin/chromium (apt-get install chromium), or CHROMIUM_PATH.`;

function fail(message: string, code: number): never {
  console.error(`demo:image: ${message}`);
  process.exit(code);
}

/** Runs the demo with `args`, its table on this terminal; resolves when it exited 0. */
function runDemo(args: readonly string[]): Promise<void> {
  const demo = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'demo', 'cli.ts'), ...args], {
    cwd: root,
    stdio: 'inherit',
  });
  return new Promise((done, reject) => {
    demo.once('error', reject);
    demo.once('exit', (code, signal) =>
      code === 0 ? done() : reject(new Error(`the demo exited with ${signal ?? `code ${code}`}`)),
    );
  });
}

async function main(): Promise<void> {
  const { values, tokens } = parseArgs({
    options: {
      out: { type: 'string' },
      width: { type: 'string' },
      html: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: false,
    tokens: true,
  });
  if (values.help === true) {
    console.log(USAGE);
    return;
  }
  if (values.html !== undefined)
    fail('--html is not for this script: it writes the report to a temporary file', 2);
  const out = resolve(typeof values.out === 'string' ? values.out : join(root, 'docs', 'demo-report.png'));
  const width = Number(values.width ?? 1280);
  if (!Number.isInteger(width) || width < 320) {
    fail(`Expected \`--width\` to be an integer of 320 or more, got \`${String(values.width)}\``, 2);
  }
  // Everything but this script's own options goes to the demo, in order.
  const own = new Set(['out', 'width']);
  const demoArgs: string[] = [];
  for (const token of tokens) {
    if (token.kind === 'option' && own.has(token.name)) continue;
    if (token.kind === 'option')
      demoArgs.push(token.rawName, ...(token.value === undefined ? [] : [token.value]));
    else if (token.kind === 'positional') demoArgs.push(token.value);
  }
  if (!existsSync(CHROMIUM_PATH))
    fail(`no Chromium at ${CHROMIUM_PATH} (apt-get install chromium, or set CHROMIUM_PATH)`, 1);

  const work = mkdtempSync(join(tmpdir(), 'circuitry-demo-image-'));
  try {
    const html = join(work, 'report.html');
    await runDemo([...demoArgs, '--html', html]);
    if (!existsSync(html)) throw new Error('the demo wrote no report');
    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_FLAGS] });
    try {
      const page = await browser.newPage({ viewport: { width, height: 800 }, deviceScaleFactor: 1 });
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(pathToFileURL(html).href, { waitUntil: 'load' });
      if (errors.length > 0) throw new Error(`the report has errors: ${errors.join('; ')}`);
      await page.screenshot({ path: out, fullPage: true });
    } finally {
      await browser.close();
    }
    console.log(`demo:image: wrote ${out}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => fail(error instanceof Error ? error.message : String(error), 1));
