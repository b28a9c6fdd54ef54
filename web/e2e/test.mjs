// The browser build's end-to-end test (CI runs it after web/build.sh):
//   node web/e2e/test.mjs [--verbose]
// In headless Chromium (WebGPU on SwiftShader) the page loads fixture models through its own
// file input, as a user would, and generates greedy tokens that must equal the native build's
// for the same model and prompt; the progress events must describe the load; a chat turn goes
// through the UI; a truncated file and a file that is not a model must show the error banner.
// Screenshots go to target/web-e2e/. Native tokens come from the `lfm` CLI (`cargo run -p
// lfm-native-demo`, or the binary in $LFM_NATIVE_BIN).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CHROMIUM_ARGS, args, generateIds, loadBuiltin, loadThroughInput, openPage } from './harness.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = join(ROOT, 'tests/fixtures');
const OUT = join(ROOT, 'target/web-e2e');
const verbose = !!args().verbose;
mkdirSync(OUT, { recursive: true });

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
}

function nativeIds(model, ids, n) {
  const cli = process.env.LFM_NATIVE_BIN
    ? [process.env.LFM_NATIVE_BIN, []]
    : ['cargo', ['run', '-q', '-p', 'lfm-native-demo', '--']];
  const out = execFileSync(
    cli[0],
    [...cli[1], 'run', '-m', model, '--prompt-ids', ids.join(','), '-n', String(n), '--temp', '0', '--json', '--ignore-eos'],
    { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return { ids: lines.filter((l) => 'id' in l).map((l) => l.id), done: lines.find((l) => l.done) };
}

function checkProgress(name, progress, weightBytes) {
  const phases = progress.map((p) => p.phase);
  const upload = progress.filter((p) => p.phase === 'upload');
  const monotonic = upload.every((p, i) => i === 0 || p.done >= upload[i - 1].done);
  const last = upload[upload.length - 1];
  check(
    `${name}: progress events header -> upload -> compile`,
    phases[0] === 'header' && phases.includes('upload') && phases[phases.length - 1] === 'compile' &&
      phases.indexOf('compile') > phases.lastIndexOf('upload'),
    `${progress.length} events`,
  );
  check(
    `${name}: upload progress climbs to the weight bytes`,
    upload.length >= 3 && monotonic && last.done === last.total && last.total === weightBytes,
    last ? `${last.done}/${last.total}, ${upload.length} upload events` : 'none',
  );
}

const cases = [
  { model: 'tiny-a-f16.gguf', ids: [1, 2, 3], n: 16 },
  // 150 prompt tokens: more than one prefill chunk (128).
  { model: 'tiny-a-f16.gguf', ids: Array.from({ length: 150 }, (_, i) => 1 + ((i * 37) % 350)), n: 16, reuse: true },
  // Quantized weights, repacked at upload (Q4_0: scales moved to their own word; Q4_K/Q6_K).
  { model: 'tiny-q-q4_k_m.gguf', ids: [100, 200, 300, 50, 60, 70, 80, 90], n: 20 },
  { model: 'tiny-q-q4_0.gguf', ids: [100, 200, 300, 50, 60, 70, 80, 90], n: 20 },
];

const { page, close, log } = await openPage({ verbose });
const timings = [];
try {
  let loaded = null;
  for (const c of cases) {
    const file = join(FIXTURES, c.model);
    const label = `${c.model} [${c.ids.length} prompt ids]`;
    if (!(c.reuse && loaded === c.model)) {
      const load = await loadThroughInput(page, file);
      check(`${c.model}: loads through the file input`, load.state === 'ready', load.error ? load.error.message : `${load.ms} ms`);
      if (load.state !== 'ready') continue;
      loaded = c.model;
      checkProgress(c.model, load.progress, load.stats.model.weightBytes);
      check(`${c.model}: weights are on the device`, load.stats.model.deviceWeightBytes > 0 && load.stats.deviceBytes >= load.stats.model.deviceWeightBytes,
        `${load.stats.model.deviceWeightBytes} bytes of weights, ${load.stats.deviceBytes} in all`);
      timings.push({ model: c.model, loadMs: load.ms, engineLoadS: load.stats.loadSeconds, uploadS: load.stats.uploadSeconds, compileS: load.stats.compileSeconds });
      check(`${c.model}: adapter needs no shader-f16`, typeof load.stats.adapter.shaderF16 === 'boolean', load.stats.adapter.name);
    }
    const web = await generateIds(page, c.ids, c.n);
    const native = nativeIds(file, c.ids, c.n);
    check(
      `${label}: ${c.n} greedy tokens equal the native build's`,
      web.ids.length === c.n && JSON.stringify(web.ids) === JSON.stringify(native.ids) && JSON.stringify(web.streamed) === JSON.stringify(web.ids),
      `web ${JSON.stringify(web.ids)} native ${JSON.stringify(native.ids)}`,
    );
    timings.push({ model: c.model, prompt: c.ids.length, webDecodeTokS: web.result.decodeTokS, webPrefillTokS: web.result.prefillTokS, nativeDecodeTokS: native.done && native.done.decode_tok_s });
  }

  // Stop: a long generation asked to stop after its third token.
  const stopped = await page.evaluate(async () => {
    const e = window.lfmDemo.engine;
    const stream = e.generate({ promptIds: [1, 2, 3], maxTokens: 500, temperature: 0, ignoreEos: true });
    let n = 0;
    for await (const t of stream) if (t.id !== null && ++n === 3) e.stop();
    return stream.result;
  });
  check('stop() ends a generation between tokens', stopped.stop === 'cancelled' && stopped.generatedTokens < 10,
    `${stopped.generatedTokens} tokens, stop ${stopped.stop}`);

  // Session snapshots in the Origin Private File System: 8 tokens, save, 8 more; start over,
  // restore, 8 again: the same 8, and 8 + 8 equal the native build's 16. A missing snapshot is
  // a clear error.
  const snapModel = cases[cases.length - 1].model;
  const snap = await page.evaluate(async () => {
    const e = window.lfmDemo.engine;
    const g = async (o) => {
      const s = e.generate(o);
      for await (const _ of s);
      return s.result;
    };
    const base = { maxTokens: 8, temperature: 0, ignoreEos: true };
    const a = await g({ ...base, promptIds: [1, 2, 3] });
    const saved = await e.saveSession('e2e');
    const b = await g({ ...base, keepContext: true });
    await e.reset();
    const restored = await e.loadSession('e2e');
    const c = await g({ ...base, keepContext: true });
    let missing = null;
    try {
      await e.loadSession('no-such-session');
    } catch (err) {
      missing = err.kind;
    }
    return { a: a.ids, b: b.ids, c: c.ids, bytes: saved.bytes, position: restored.position, missing, list: await e.sessions() };
  });
  const native16 = nativeIds(join(FIXTURES, snapModel), [1, 2, 3], 16).ids;
  check(
    `${snapModel}: session saved to OPFS and restored continues exactly`,
    JSON.stringify([...snap.a, ...snap.b]) === JSON.stringify(native16) && JSON.stringify(snap.c) === JSON.stringify(snap.b) &&
      snap.position === 3 + 8 - 1 && snap.list.some((s) => s.name === 'e2e' && s.bytes === snap.bytes),
    `8+8 ${JSON.stringify([...snap.a, ...snap.b])} native ${JSON.stringify(native16)} restored ${JSON.stringify(snap.c)}, ${snap.bytes} bytes`,
  );
  check('a missing session snapshot is a clear error', snap.missing === 'snapshot', String(snap.missing));

  // Two chat turns through the UI: type, press Enter, watch the reply stream in; the second
  // turn only feeds what the session has not seen. Greedy, on a prompt whose reply has no
  // special tokens: a random-weight model can emit them, the template drops them from the
  // content, and the conversation then (correctly) starts over instead of reusing.
  await page.fill('#max-tokens', '24');
  await page.fill('#temperature', '0');
  await page.fill('#repeat-penalty', '1');
  const turn = async (text, n) => {
    await page.fill('#prompt', text);
    await page.press('#prompt', 'Enter');
    await page.waitForFunction((n) => window.lfmDemo.state === 'ready' && document.querySelectorAll('.msg.assistant .meta').length === n,
      n, { timeout: 300_000 });
    return page.evaluate(() => ({
      user: document.querySelectorAll('.msg.user').length,
      reply: [...document.querySelectorAll('.msg.assistant')].pop().innerText,
      result: window.lfmDemo.lastResult,
      decode: document.getElementById('stat-decode').textContent,
    }));
  };
  const chat = await turn('Tell me a story.', 1);
  check('chat turn through the UI streams a reply', chat.user === 1 && chat.result.generatedTokens > 0 && chat.reply.length > 0,
    `${chat.result.generatedTokens} tokens, stop ${chat.result.stop}, ${chat.decode} tok/s shown`);
  const chat2 = await turn('Tell me more.', 2);
  check('second chat turn reuses the session prefix', chat2.user === 2 && chat2.result.reusedTokens > 0 && chat2.result.generatedTokens > 0,
    `${chat2.result.reusedTokens} tokens reused, ${chat2.result.promptTokens} new`);
  await page.screenshot({ path: join(OUT, 'page.png'), fullPage: true });

  // A built-in model by URL: downloaded into the Origin Private File System, then read from
  // there after a page reload; the cache can be cleared.
  await page.evaluate(() => window.lfmDemo.engine.clearCache());
  const first = await loadBuiltin(page, 'Tiny LFM2 · F16');
  const dl = first.progress.filter((p) => p.phase === 'download');
  check('built-in model downloads (URL) and loads', first.state === 'ready' && first.stats.cached === false && dl.length >= 1 &&
    dl[dl.length - 1].done === first.stats.model.fileBytes, first.error ? first.error.message : `${first.ms} ms, ${dl.length} download events`);
  await page.reload();
  await page.waitForFunction(() => window.lfmDemo && window.lfmDemo.booted, null, { timeout: 60_000 });
  const again = await loadBuiltin(page, 'Tiny LFM2 · F16');
  check('after a reload the built-in model comes from the cache', again.state === 'ready' && again.stats.cached === true,
    again.error ? again.error.message : `cached: ${again.stats.cached}`);
  if (again.state === 'ready') {
    const web = await generateIds(page, [1, 2, 3], 16);
    const native = nativeIds(join(FIXTURES, 'tiny-a-f16.gguf'), [1, 2, 3], 16);
    check('cached model gives the native tokens', JSON.stringify(web.ids) === JSON.stringify(native.ids), JSON.stringify(web.ids));
  }
  const cleared = await page.evaluate(async () => {
    const e = window.lfmDemo.engine;
    const before = (await e.cachedModels()).length;
    await e.clearCache();
    return { before, after: (await e.cachedModels()).length };
  });
  check('clear cache empties it', cleared.before === 1 && cleared.after === 0, JSON.stringify(cleared));

  // Error paths: a truncated model and a file that is not a model.
  const bytes = readFileSync(join(FIXTURES, 'tiny-a-f16.gguf'));
  const cut = join(tmpdir(), 'lfm-e2e-truncated.gguf');
  writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
  const bad = await loadThroughInput(page, cut);
  check('truncated file shows the unsupported-file message', bad.state === 'error' && bad.error.kind === 'unsupported-file' &&
    /not a model this page can run/.test(bad.errorShown || '') && /truncated|outside/.test(bad.error.message), bad.error && bad.error.message);
  await page.screenshot({ path: join(OUT, 'error.png'), fullPage: true });
  const notModel = join(tmpdir(), 'lfm-e2e-not-a-model.gguf');
  writeFileSync(notModel, 'this is not a GGUF file\n'.repeat(100));
  const bad2 = await loadThroughInput(page, notModel);
  check('a file that is not GGUF shows the unsupported-file message', bad2.state === 'error' && bad2.error.kind === 'unsupported-file' &&
    /GGUF/.test(bad2.error.message), bad2.error && bad2.error.message);
} catch (e) {
  check('end-to-end run', false, e.stack || e.message);
  for (const l of log.slice(-40)) console.error(l);
} finally {
  await close();
}
// Without --enable-unsafe-webgpu headless Chromium offers no adapter: the page must say so.
try {
  const plain = await openPage({ verbose, args: CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu') });
  try {
    await plain.page.waitForFunction(() => window.lfmDemo.booted, null, { timeout: 60_000 });
    const shown = await plain.page.evaluate(() => ({
      kind: document.getElementById('error').dataset.kind,
      hidden: document.getElementById('error').hidden,
      text: document.getElementById('error').innerText,
      badge: document.getElementById('adapter-badge').textContent,
    }));
    check('no WebGPU adapter shows the no-webgpu message', !shown.hidden && shown.kind === 'no-webgpu' &&
      /WebGPU is not available/.test(shown.text), `${shown.badge}: ${shown.text.split('\n')[0]}`);
    await plain.page.screenshot({ path: join(OUT, 'no-webgpu.png') });
  } finally {
    await plain.close();
  }
} catch (e) {
  check('no-WebGPU page', false, e.message);
}

writeFileSync(join(OUT, 'timings.json'), JSON.stringify(timings, null, 2) + '\n');
for (const t of timings) console.log('timing', JSON.stringify(t));
console.log(`screenshots: ${OUT}/page.png, error.png, no-webgpu.png`);
console.log(`web e2e: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
