// node web/e2e/generate.mjs --model FILE --prompt-ids 1,2,3 -n N [--verbose]
//
// Serves web/dist/ on 127.0.0.1, opens headless Chromium, loads FILE through the page's own
// file input, generates N greedy tokens in the tab (end-of-generation tokens do not stop it,
// like `lfm run --temp 0 --ignore-eos`) and prints one line:
//   {"ids":[...],"adapter":"...","decode_tok_s":X}
// Load time and other details go to stderr.

import { resolve } from 'node:path';
import { args, generateIds, loadThroughInput, openPage } from './harness.mjs';

const a = args();
if (!a.model || !a['prompt-ids']) {
  console.error('usage: node web/e2e/generate.mjs --model FILE --prompt-ids 1,2,3 -n N');
  process.exit(2);
}
const ids = String(a['prompt-ids']).split(',').filter(Boolean).map(Number);
const n = Number(a.n ?? 16);
const { page, close, log } = await openPage({ verbose: !!a.verbose });
let code = 0;
try {
  const load = await loadThroughInput(page, resolve(a.model));
  if (load.state !== 'ready') {
    throw new Error(`loading failed: ${load.error ? `${load.error.kind}: ${load.error.message}` : 'unknown error'}`);
  }
  const g = await generateIds(page, ids, n);
  const adapter = g.stats.adapter;
  console.error(
    `loaded in ${(load.ms / 1000).toFixed(2)} s (engine ${load.stats.loadSeconds.toFixed(2)} s: upload ` +
      `${load.stats.uploadSeconds.toFixed(2)} s, pipelines ${load.stats.compileSeconds.toFixed(2)} s), prefill ${g.result.prefillTokS.toFixed(1)} tok/s, ` +
      `decode ${g.result.decodeTokS.toFixed(2)} tok/s on ${adapter.name} (${adapter.backend}; shader-f16: ${adapter.shaderF16})`,
  );
  console.log(JSON.stringify({ ids: g.ids, adapter: adapter.name || adapter.backend, decode_tok_s: g.result.decodeTokS }));
} catch (e) {
  console.error(`error: ${e.message}`);
  for (const l of log.slice(-30)) console.error(l);
  code = 1;
} finally {
  await close();
}
process.exit(code);
