import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Redis } from 'ioredis';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';

import { DEFAULT_POLICY } from '../../src/cli/fleet.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { breakerKey } from '../../src/stores/redis/keys.js';
import { count, root, spawnCli, trip, waitForOutput } from '../helpers/cli.js';
import { emptyRecord, writeRecord } from '../helpers/redis-record.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';
import { CHROMIUM_FLAGS, CHROMIUM_PATH } from '../../scripts/chromium.js';

const TOKEN = `token-${randomUUID()}`;
const EVIL = '<img src=x onerror="window.__xss=1">/tenant';
// UPDATE_SCREENSHOT=1 npm run test:unit -- dashboard  rewrites the README's screenshot.
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1' ? join(root, 'docs', 'dashboard.png') : null;

const row = (page: Page, name: string) =>
  page.locator('tr', { has: page.locator('td.name', { hasText: name }) });

describe(
  'npx circuitry dashboard, in headless Chromium',
  {
    timeout: 60_000,
    skip: existsSync(CHROMIUM_PATH) ? false : `no Chromium at ${CHROMIUM_PATH} (apt-get install chromium)`,
  },
  () => {
    let server: RedisServer;
    let client: Redis;
    let store: RedisStore;
    let prefix: string;
    let dashboard: ChildProcess;
    let url: string;
    let browser: Browser;
    let work: string;
    useRedisServer((s, c) => {
      server = s;
      client = c;
    });

    before(async () => {
      work = mkdtempSync(join(tmpdir(), 'circuitry-dashboard-'));
      prefix = `dash-${randomUUID()}:`;
      store = new RedisStore({ client, prefix });
      await count(store, 'charge-card/tenant-a', 40, 1);
      await count(store, 'charge-card/tenant-b', 25, 3);
      await count(store, 'charge-card/tenant-c', 60, 0);
      await trip(store, 'send-email/tenant-b');
      await store.force('send-email/tenant-d', DEFAULT_POLICY, 'metrics-only');
      await count(store, 'send-email/tenant-d', 10, 4);
      // A valid record whose window is empty (its calls aged out) but which keeps a run of 3.
      await writeRecord(
        client,
        breakerKey(prefix, 'run-only/tenant'),
        { ...emptyRecord(Math.floor(Date.now() / 1000)), cf: 3 },
        DEFAULT_POLICY.bucketMs,
      );
      dashboard = spawnCli(
        [
          'dashboard',
          '--port',
          '0',
          '--print-token',
          '--interval',
          '500',
          '--redis',
          server.url,
          '--prefix',
          prefix,
        ],
        { CIRCUITRY_DASHBOARD_TOKEN: TOKEN },
      );
      const printed = await waitForOutput(dashboard.stdout!, /Ctrl-C stops it/);
      url = /read-only: +(\S+)/.exec(printed)![1]!;
      assert.match(printed, new RegExp(`with actions: +${url.replace(/[.]/g, '\\.')}#token=${TOKEN}`));
      browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_FLAGS] });
    });

    after(async () => {
      await browser?.close();
      if (dashboard !== undefined && dashboard.exitCode === null) {
        const exited = new Promise((resolve) => dashboard.once('close', resolve));
        dashboard.kill('SIGINT');
        await exited;
      }
      rmSync(work, { recursive: true, force: true });
    });

    it('shows a breaker open within 2 s of another process tripping it; forces it closed with the token, is refused without', async () => {
      const page = await browser.newPage({ viewport: { width: 1440, height: 640 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      // The refusals below are logged by the browser as failed loads; anything else is a fault.
      page.on('console', (m) => {
        if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) errors.push(m.text());
      });
      await page.goto(url);
      await row(page, 'charge-card/tenant-a').waitFor();
      // Grouped by base name, the group with an open breaker first.
      assert.deepEqual(
        await page
          .locator('section.group')
          .evaluateAll((s) => s.map((e) => (e as unknown as { dataset: { base?: string } }).dataset.base)),
        ['send-email', 'charge-card', 'run-only'],
      );
      assert.equal(await row(page, 'charge-card/tenant-a').getAttribute('data-circuit-state'), 'closed');
      // No generation column; a breaker with an empty window but a kept run shows the run.
      assert.doesNotMatch(await page.locator('thead').first().innerText(), /generation/i);
      await row(page, 'run-only/tenant').waitFor();
      assert.equal(await row(page, 'run-only/tenant').locator('td.run').innerText(), 'run of 3');

      // Another process trips it.
      const tripper = spawn(
        process.execPath,
        ['--import', 'tsx', 'test/helpers/trip-breaker.ts', server.url, prefix, 'charge-card/tenant-a'],
        { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      await waitForOutput(tripper.stdout, /tripped/);
      const tripped = Date.now();
      await page
        .locator('tr[data-circuit-state="open"]', {
          has: page.locator('td.name', { hasText: 'charge-card/tenant-a' }),
        })
        .waitFor({ timeout: 2_000 });
      const seenAfterMs = Date.now() - tripped;
      assert.ok(seenAfterMs < 2_000, `seen ${seenAfterMs} ms after the trip`);
      assert.match(await page.locator('#timeline').innerText(), /charge-card\/tenant-a\s+closed → open/);
      // The retry-after counts down.
      const retry = row(page, 'charge-card/tenant-a').locator('td.retry');
      const first = parseFloat(await retry.innerText());
      await page.waitForTimeout(1_100);
      const second = parseFloat(await retry.innerText());
      assert.ok(first > 20 && second < first, `retry-after ${first} then ${second}`);

      // Without the token: refused, and the breaker stays open.
      await row(page, 'charge-card/tenant-a').locator('button[data-action="close"]').click();
      await page.locator('#message.error', { hasText: 'refused: a token is needed' }).waitFor();
      const wrong = await page.evaluate(async () => {
        const res = await fetch('/api/action', {
          method: 'POST',
          headers: { authorization: 'Bearer nope', 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'charge-card/tenant-a', action: 'close' }),
        });
        return res.status;
      });
      assert.equal(wrong, 403);
      assert.equal((await store.inspect('charge-card/tenant-a', DEFAULT_POLICY))?.override, null);

      // With the token: forced closed.
      await page.fill('#token', TOKEN);
      await page.click('#token-form button');
      await row(page, 'charge-card/tenant-a').locator('button[data-action="close"]').click();
      await page
        .locator('tr[data-circuit-state="forced-closed"]', {
          has: page.locator('td.name', { hasText: 'charge-card/tenant-a' }),
        })
        .waitFor({ timeout: 2_000 });
      assert.match(
        await page.locator('#message').innerText(),
        /close charge-card\/tenant-a: open -> forced-closed$/,
      );
      assert.equal((await store.inspect('charge-card/tenant-a', DEFAULT_POLICY))?.override, 'forced-closed');

      await page.screenshot({ path: SCREENSHOT ?? join(work, 'dashboard.png'), fullPage: true });

      // Reset: an open breaker closes at once, its failures forgotten.
      await row(page, 'send-email/tenant-b').locator('button[data-action="reset"]').click();
      await page
        .locator('tr[data-circuit-state="closed"]', {
          has: page.locator('td.name', { hasText: 'send-email/tenant-b' }),
        })
        .waitFor({ timeout: 10_000 });
      assert.match(await page.locator('#message').innerText(), /reset send-email\/tenant-b: open -> closed$/);
      const reset = await store.inspect('send-email/tenant-b', DEFAULT_POLICY);
      assert.equal(reset?.state, 'closed');
      assert.equal(reset?.counts.failures, 0);

      // A name is text, never markup, however it arrives (here: pushed after the page loaded).
      await store.force(EVIL, DEFAULT_POLICY, 'forced-open');
      await row(page, EVIL).waitFor();
      assert.equal(await row(page, EVIL).locator('td.name').innerText(), EVIL);
      assert.equal(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss), undefined);
      assert.equal(await page.locator('img').count(), 0);
      assert.deepEqual(errors, []);
      await page.close();
    });

    it('serves only its own Host, and the page loads nothing from elsewhere', async () => {
      // What a page on another site sees after pointing its own name at 127.0.0.1 (DNS rebinding).
      const rebound = await new Promise<number | undefined>((resolve, reject) =>
        request(url, { headers: { host: 'attacker.example' } }, (res) => {
          res.resume();
          resolve(res.statusCode);
        })
          .on('error', reject)
          .end(),
      );
      assert.equal(rebound, 421);
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
      const html = await res.text();
      assert.doesNotMatch(html, /https?:\/\//);
      const refused = await fetch(new URL('/api/action', url), {
        method: 'POST',
        body: JSON.stringify({ name: 'x', action: 'open' }),
      });
      assert.equal(refused.status, 401);
    });

    it('SIGINT stops it with exit 0', async () => {
      const exited = new Promise<number | null>((resolve) => dashboard.once('close', resolve));
      dashboard.kill('SIGINT');
      assert.equal(await exited, 0);
    });
  },
);
