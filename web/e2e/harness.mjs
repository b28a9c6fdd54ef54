// Shared by the end-to-end scripts: serve web/dist/, drive headless Chromium (Debian's, via
// playwright-core) with WebGPU on SwiftShader, load a model through the page's own file input,
// generate in the tab.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serve } from '../serve.mjs';

export const DIST = fileURLToPath(new URL('../dist/', import.meta.url));

// Without --enable-unsafe-webgpu, requestAdapter() returns null in headless Linux Chromium;
// with --disable-gpu WebGPU runs on SwiftShader (software Vulkan: no shader-f16, no subgroups).
export const CHROMIUM_ARGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
];

export function chromiumPath() {
  const p = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(p)) throw new Error(`${p} not found: apt-get install chromium (or set CHROMIUM)`);
  return p;
}

/** Serves dist/, starts Chromium, opens the page. Returns {page, url, close, log}. */
export async function openPage({ verbose = false, args = CHROMIUM_ARGS } = {}) {
  if (!existsSync(DIST + 'index.html')) throw new Error('web/dist/ is missing: run web/build.sh first');
  const { server, url } = await serve(DIST);
  const browser = await chromium.launch({ executablePath: chromiumPath(), args, headless: true });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const log = [];
  const record = (line) => {
    log.push(line);
    if (verbose) console.error(line);
  };
  page.on('console', (m) => record(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => record(`[page error] ${e.message}`));
  page.on('worker', (w) => w.on('console', (m) => record(`[worker ${m.type()}] ${m.text()}`)));
  await page.goto(url);
  await page.waitForFunction(() => window.lfmDemo && (window.lfmDemo.booted || window.lfmDemo.lastError), null, {
    timeout: 60_000,
  });
  const close = async () => {
    await browser.close();
    await new Promise((ok) => server.close(ok));
  };
  return { page, url, close, log };
}

/**
 * Loads `file` through the page's file input, as a user would, and waits for the page to be
 * ready or to show an error. Returns {state, ms, stats, error, progress}.
 */
export async function loadThroughInput(page, file, { timeout = 300_000 } = {}) {
  const t0 = Date.now();
  await page.evaluate(() => { window.lfmDemo.state = 'picked'; });
  await page.setInputFiles('#file-input', file);
  await page.waitForFunction(() => ['ready', 'error'].includes(window.lfmDemo.state), null, { timeout });
  const ms = Date.now() - t0;
  return page.evaluate(async (ms) => {
    const d = window.lfmDemo;
    return {
      state: d.state,
      ms,
      pageLoadMs: d.loadMs,
      stats: d.state === 'ready' ? await d.engine.stats() : null,
      error: d.lastError,
      errorShown: document.getElementById('error').hidden ? null : document.getElementById('error').innerText,
      progress: d.progress,
    };
  }, ms);
}

/** Clicks the built-in model whose button shows `name` (downloaded by URL, through the cache). */
export async function loadBuiltin(page, name, { timeout = 300_000 } = {}) {
  const t0 = Date.now();
  await page.evaluate(() => { window.lfmDemo.state = 'clicked'; window.lfmDemo.progress = []; });
  await page.locator('#builtin button', { hasText: name }).click();
  await page.waitForFunction(() => ['ready', 'error'].includes(window.lfmDemo.state), null, { timeout });
  const ms = Date.now() - t0;
  return page.evaluate((ms) => {
    const d = window.lfmDemo;
    return { state: d.state, ms, stats: d.loadStats, error: d.lastError, progress: d.progress };
  }, ms);
}

/** Generates `n` greedy tokens from `ids` in the tab (end-of-generation tokens included). */
export async function generateIds(page, ids, n, { timeout = 600_000 } = {}) {
  page.setDefaultTimeout(timeout);
  return page.evaluate(
    async ({ ids, n }) => {
      const d = window.lfmDemo;
      const stream = d.engine.generate({ promptIds: ids, maxTokens: n, temperature: 0, ignoreEos: true });
      const streamed = [];
      for await (const t of stream) if (t.id !== null) streamed.push(t.id);
      const r = await stream.result;
      const s = await d.engine.stats();
      return { ids: r.ids, streamed, result: r, stats: s };
    },
    { ids, n },
  );
}

/** Command-line flags: --name value pairs. */
export function args(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-')) continue;
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[a.replace(/^-+/, '')] = true;
    else out[a.replace(/^-+/, '')] = argv[++i];
  }
  return out;
}
