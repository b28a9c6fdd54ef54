// The demo page: model picker (built-in list, file, URL), progress, chat with streaming output,
// settings, device and memory readouts, friendly errors. All work happens in the engine's worker.

import { createEngine, LfmError } from './lfm.js';

const $ = (id) => document.getElementById(id);
const demo = { engine: null, progress: [], state: 'idle', lastError: null, lastResult: null };
window.lfmDemo = demo; // for the end-to-end test and the curious

const MESSAGES = {
  'no-webgpu': ['WebGPU is not available',
    'This browser does not offer WebGPU, which the model needs. Use a recent Chrome or Edge (113+), or Safari 26 / Firefox 141+ with WebGPU enabled; on Linux Chrome may need chrome://flags/#enable-unsafe-webgpu.'],
  'adapter-limits': ['Your GPU cannot run this model',
    'The GPU adapter does not offer the limits this model needs. Try a smaller or more quantized model.'],
  'unsupported-file': ['This file is not a model this page can run',
    'Pick an LFM2 model in GGUF format (.gguf: F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M or Q6_K). The file may also be truncated or damaged.'],
  'file-read': ['The file could not be read', 'Was it moved, deleted or changed while loading? Pick it again.'],
  download: ['The model could not be downloaded', 'Check the URL (the server must allow cross-origin requests) and your connection.'],
  'out-of-memory': ['Out of memory',
    'The GPU (or the browser\'s storage) has no room for this model. Close other tabs or GPU-heavy apps, or pick a smaller model.'],
  'device-lost': ['The GPU device was lost',
    'The browser reset the GPU (a driver update, a crash, or it was needed elsewhere). Load the model again.'],
  template: ['This model has no chat template', 'Switch on "Plain completion" to continue text instead.'],
  'invalid-argument': ['That request did not work', ''],
  busy: ['Still busy', 'Wait for the current step to finish, or press Stop.'],
  'no-model': ['No model loaded', 'Pick a model first.'],
  snapshot: ['The saved session cannot be restored',
    'It is missing, damaged, or was saved with another model or version. The current session is unchanged.'],
  internal: ['Something went wrong inside the engine', 'Reloading the page usually helps.'],
};

function showError(err) {
  const kind = err instanceof LfmError ? err.kind : 'internal';
  const [title, text] = MESSAGES[kind] || MESSAGES.internal;
  demo.lastError = { kind, message: err.message };
  $('error-title').textContent = title;
  $('error-text').textContent = text;
  $('error-detail').textContent = err.message || String(err);
  $('error').dataset.kind = kind;
  $('error').hidden = false;
}

function clearError() {
  $('error').hidden = true;
}

function setState(state, text) {
  demo.state = state;
  $('status').dataset.state = state;
  $('status').textContent = text;
  const ready = state === 'ready';
  $('prompt').disabled = !(ready || state === 'generating');
  $('send').disabled = !ready;
  $('reset').disabled = !ready;
  $('save-session').disabled = !ready;
  $('restore-session').disabled = !ready;
  $('stop').disabled = state !== 'generating';
  for (const el of document.querySelectorAll('#builtin button, #url-form button, #file-input')) {
    el.disabled = state === 'loading' || state === 'generating';
  }
}

const mb = (n) => (n / (1 << 20)).toFixed(n < 10 << 20 ? 2 : 1) + ' MB';
const fmtRate = (x) => (x ? x.toFixed(x < 10 ? 2 : 1) : '–');

function onProgress(p) {
  demo.progress.push(p);
  $('progress').hidden = false;
  const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
  const label = {
    download: `Downloading ${mb(p.done)}${p.total ? ' / ' + mb(p.total) : ''}`,
    header: 'Reading the model header…',
    upload: `Uploading weights to the GPU: ${mb(p.done)} / ${mb(p.total)}`,
    compile: 'Compiling shaders…',
  }[p.phase] || p.phase;
  $('progress-fill').style.width = (p.phase === 'compile' ? 100 : frac * 100).toFixed(1) + '%';
  $('progress-label').textContent = label;
}

function feature(name, on) {
  return `<span class="feat ${on ? 'yes' : 'no'}">${on ? '✓' : '✗'} ${name}</span>`;
}

function escapeHtml(s) {
  return String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

function showDevice(probe, stats) {
  const a = stats && stats.adapter;
  const p = probe && probe.adapter;
  const feats = a ? a.features : p ? p.features : [];
  const rows = [];
  if (a) rows.push(['Adapter', `${a.name || '(unnamed)'} · ${a.backend}`]);
  if (p) rows.push(['Browser', [p.vendor, p.architecture, p.description].filter(Boolean).join(' · ') || '–']);
  rows.push(['Features', feature('shader-f16', feats.includes('shader-f16')) + feature('subgroups', feats.includes('subgroups'))
    + feature('timestamp-query', feats.includes('timestamp-query'))]);
  const lim = a || (p && p.limits);
  if (lim) rows.push(['Max binding', mb(lim.maxStorageBufferBindingSize)], ['Max buffer', mb(lim.maxBufferSize)]);
  rows.push(['Needs', 'core WebGPU only (no shader-f16, no subgroups)']);
  $('device-info').innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('');
  const badge = $('adapter-badge');
  if (a || p) {
    badge.textContent = 'WebGPU: ' + (a ? a.name || a.backend : [p.vendor, p.architecture].filter(Boolean).join(' ') || 'adapter ready');
    badge.classList.remove('bad');
  }
}

async function refreshStats() {
  const s = await demo.engine.stats();
  demo.stats = s;
  $('stat-wasm').textContent = mb(s.wasmMemoryBytes || 0);
  if (!s.model) return;
  $('stat-device').textContent = mb(s.deviceBytes);
  $('stat-load').textContent = s.loadSeconds.toFixed(2) + ' s';
  $('stat-ctx').textContent = s.model.ctx;
  $('stat-tokens').textContent = s.position;
  if (s.last) {
    $('stat-decode').textContent = fmtRate(s.last.decodeTokS);
    $('stat-prefill').textContent = fmtRate(s.last.prefillTokS);
  }
}

async function refreshCache() {
  try {
    const list = await demo.engine.cachedModels();
    const bytes = list.reduce((n, m) => n + (m.bytes || 0), 0);
    $('cache-info').textContent = list.length
      ? `${list.length} downloaded model${list.length > 1 ? 's' : ''} cached (${mb(bytes)}).`
      : 'Downloaded models are cached in this browser.';
  } catch {
    $('cache-info').textContent = 'No model cache in this browser.';
  }
}

async function load(source, name) {
  clearError();
  demo.progress = [];
  $('messages').textContent = '';
  setState('loading', `Loading ${name}…`);
  $('model-info').textContent = '';
  for (const id of ['stat-decode', 'stat-prefill', 'stat-ctx', 'stat-device', 'stat-load']) $(id).textContent = '–';
  $('stat-tokens').textContent = '0';
  const t0 = performance.now();
  try {
    const stats = await demo.engine.load(source, { onProgress, ctx: Number($('ctx').value) || 4096, name });
    demo.loadMs = performance.now() - t0;
    demo.loadStats = stats;
    const m = stats.model;
    $('model-info').innerHTML = `<b>${escapeHtml(m.name)}</b> · ${mb(m.fileBytes)} · ${m.layers} layers, hidden ${m.hidden}, vocab ${m.vocab} · ${m.formats.join(', ')}${stats.cached ? ' · from cache' : ''}`;
    if (!m.chatTemplate) $('mode-complete').checked = true;
    showDevice(demo.probe, stats);
    await demo.engine.setSystemPrompt($('system-prompt').value);
    setState('ready', `Ready: ${m.name} (loaded in ${(demo.loadMs / 1000).toFixed(2)} s).`);
    $('progress-label').textContent = `Loaded ${mb(m.fileBytes)} in ${(demo.loadMs / 1000).toFixed(2)} s`;
    await refreshStats();
    await refreshCache();
    $('prompt').focus();
  } catch (err) {
    setState('error', `Could not load ${name}.`);
    $('progress').hidden = true;
    showError(err);
  }
}

function settings() {
  const num = (id) => ($(id).value === '' ? undefined : Number($(id).value));
  return {
    maxTokens: num('max-tokens'), temperature: num('temperature'), topK: num('top-k'), topP: num('top-p'),
    minP: num('min-p'), repeatPenalty: num('repeat-penalty'), seed: num('seed'),
  };
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.textContent = text;
  $('messages').append(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

async function send() {
  const text = $('prompt').value;
  if (!text.trim() || demo.state !== 'ready') return;
  clearError();
  $('prompt').value = '';
  const complete = $('mode-complete').checked;
  addMessage('user', text);
  const out = addMessage('assistant', complete ? text : '');
  out.classList.add('streaming');
  setState('generating', 'Generating…');
  const opts = settings();
  const stream = complete ? demo.engine.generate({ prompt: text, ...opts }) : demo.engine.chat(text, opts);
  const t0 = performance.now();
  let n = 0;
  try {
    for await (const t of stream) {
      out.textContent += t.text;
      if (t.id !== null) n += 1;
      if (n % 4 === 0) {
        $('stat-decode').textContent = fmtRate(n / ((performance.now() - t0) / 1000));
        out.scrollIntoView({ block: 'end' });
      }
    }
    const r = await stream.result;
    demo.lastResult = r;
    const meta = document.createElement('span');
    meta.className = 'meta';
    const why = { eos: 'end of reply', length: 'token limit', context_full: 'context full — press New chat', cancelled: 'stopped' }[r.stop] || r.stop;
    meta.textContent = `${r.generatedTokens} tokens · ${fmtRate(r.decodeTokS)} tok/s · ${why}`;
    out.append(meta);
    setState('ready', 'Ready.');
  } catch (err) {
    showError(err);
    setState(err.kind === 'device-lost' ? 'error' : 'ready', err.kind === 'device-lost' ? 'The GPU was lost: load the model again.' : 'Ready.');
  } finally {
    out.classList.remove('streaming');
    await refreshStats().catch(() => {});
  }
}

async function loadBuiltins() {
  try {
    const resp = await fetch('models/models.json');
    if (!resp.ok) return;
    const list = await resp.json();
    for (const m of list) {
      const b = document.createElement('button');
      b.type = 'button';
      b.innerHTML = `${escapeHtml(m.name)}<small>${escapeHtml(m.note || '')} · ${mb(m.bytes)}</small>`;
      b.onclick = () => {
        // "complete": a model made to continue text (e.g. code) rather than to chat.
        $('mode-complete').checked = m.mode === 'complete';
        load(new URL(m.url, new URL('models/', location.href)).href, m.name);
      };
      $('builtin').append(b);
    }
  } catch {
    // no built-in models in this build
  }
}

async function main() {
  setState('idle', 'Pick a model to start.');
  try {
    demo.engine = await createEngine();
  } catch (err) {
    showError(err);
    return;
  }
  demo.engine.onDeviceLost((msg) => {
    setState('error', 'The GPU was lost: load the model again.');
    showError(new LfmError('device-lost', msg));
  });
  demo.probe = await demo.engine.probe();
  if (!demo.probe.webgpu || !demo.probe.adapter) {
    $('adapter-badge').textContent = 'no WebGPU';
    $('adapter-badge').classList.add('bad');
    showError(new LfmError('no-webgpu', demo.probe.webgpu ? 'requestAdapter() returned null' : 'navigator.gpu is missing'));
  } else {
    showDevice(demo.probe, null);
  }
  await loadBuiltins();
  await refreshCache();
  await refreshStats();
  $('file-input').addEventListener('change', (e) => {
    const f = e.target.files[0];
    if (f) load(f, f.name);
  });
  $('url-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const url = $('url-input').value.trim();
    if (url) load(url, decodeURIComponent(url.split('/').pop().split('?')[0]) || url);
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  $('prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      send();
    }
  });
  $('stop').onclick = () => demo.engine.stop();
  $('reset').onclick = async () => {
    await demo.engine.reset();
    $('messages').textContent = '';
    await refreshStats();
  };
  $('save-session').onclick = async () => {
    try {
      const r = await demo.engine.saveSession('page');
      setState('ready', `Session saved (${mb(r.bytes)} in the browser's private storage).`);
    } catch (err) {
      showError(err);
    }
  };
  $('restore-session').onclick = async () => {
    try {
      const st = await demo.engine.loadSession('page');
      $('messages').textContent = '';
      setState('ready', `Session restored at ${st.position} tokens; the chat starts a new conversation on top of it.`);
      await refreshStats();
    } catch (err) {
      showError(err);
    }
  };
  $('system-prompt').addEventListener('change', async () => {
    if (demo.state === 'ready') {
      await demo.engine.setSystemPrompt($('system-prompt').value);
      $('messages').textContent = '';
    }
  });
  $('clear-cache').onclick = async () => {
    await demo.engine.clearCache();
    await refreshCache();
  };
  demo.booted = true;
}

main();
