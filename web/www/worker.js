// The engine's Web Worker (a module worker): owns the wasm engine and the model cache, so the
// page never freezes. Requests: {id, op, ...args}; replies: {id, ok, result | error}; events:
// {type: 'progress' | 'token' | 'device-lost', ...}. See lfm.js for the page-side API.

import init, { Engine } from './pkg/lfm_web.js';

let engine = null;
let dead = null; // set when the wasm module trapped: it cannot be used again

const ready = init().then(() => {
  engine = new Engine();
  engine.onDeviceLost((message) => postMessage({ type: 'device-lost', message }));
});

class WorkerError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

// ---- Model cache: downloads are kept in the Origin Private File System --------------------

const CACHE_DIR = 'lfm-models';

async function cacheDir(create = true) {
  if (!navigator.storage || !navigator.storage.getDirectory) return null;
  try {
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle(CACHE_DIR, { create });
  } catch {
    return null;
  }
}

async function cacheName(url) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(url));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  return hex.slice(0, 32);
}

async function readMeta(dir, name) {
  try {
    const f = await (await dir.getFileHandle(name + '.json')).getFile();
    return JSON.parse(await f.text());
  } catch {
    return null;
  }
}

async function writeFile(dir, name, data) {
  const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
  await w.write(data);
  await w.close();
}

async function cachedModels() {
  const dir = await cacheDir(false);
  if (!dir) return [];
  const out = [];
  for await (const [name] of dir.entries()) {
    if (!name.endsWith('.json')) continue;
    const meta = await readMeta(dir, name.slice(0, -5));
    if (meta && meta.complete) out.push({ url: meta.url, bytes: meta.bytes, savedAt: meta.savedAt });
  }
  return out;
}

async function clearCache() {
  if (!navigator.storage || !navigator.storage.getDirectory) return;
  const root = await navigator.storage.getDirectory();
  try {
    await root.removeEntry(CACHE_DIR, { recursive: true });
  } catch (e) {
    if (e.name !== 'NotFoundError') throw e;
  }
}

// Streams `url` into the cache (or into memory where there is no OPFS) and returns a Blob.
async function download(url, progress, useCache) {
  const dir = useCache ? await cacheDir() : null;
  const name = dir ? await cacheName(url) : null;
  if (dir) {
    const meta = await readMeta(dir, name);
    if (meta && meta.complete) {
      try {
        const file = await (await dir.getFileHandle(name)).getFile();
        if (file.size === meta.bytes) {
          progress('download', file.size, file.size);
          return { blob: file, cached: true };
        }
      } catch {
        // fall through and download again
      }
    }
  }
  let resp;
  try {
    resp = await fetch(url);
  } catch (e) {
    throw new WorkerError('download', `could not download ${url}: ${e.message}`);
  }
  if (!resp.ok) throw new WorkerError('download', `could not download ${url}: HTTP ${resp.status}`);
  const total = Number(resp.headers.get('content-length')) || 0;
  const reader = resp.body.getReader();
  let done = 0;
  progress('download', 0, total);
  if (dir) {
    await writeFile(dir, name + '.json', JSON.stringify({ url, complete: false }));
    const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
    try {
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        await w.write(value);
        done += value.length;
        progress('download', done, total);
      }
      await w.close();
    } catch (e) {
      await w.abort().catch(() => {});
      if (e.name === 'QuotaExceededError') {
        throw new WorkerError('out-of-memory', 'not enough storage to cache this model: ' + e.message);
      }
      throw e;
    }
    const meta = { url, bytes: done, complete: true, savedAt: new Date().toISOString() };
    await writeFile(dir, name + '.json', JSON.stringify(meta));
    return { blob: await (await dir.getFileHandle(name)).getFile(), cached: false };
  }
  const parts = [];
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    parts.push(value);
    done += value.length;
    progress('download', done, total);
  }
  return { blob: new Blob(parts), cached: false };
}

// ---- Session snapshots, kept in the Origin Private File System ----------------------------

const SESSION_DIR = 'lfm-sessions';

async function sessionDir(create) {
  if (!navigator.storage || !navigator.storage.getDirectory) {
    throw new WorkerError('invalid-argument', 'this browser has no Origin Private File System to keep sessions in');
  }
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(SESSION_DIR, { create });
}

function sessionFile(name) {
  const n = String(name || '');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(n)) {
    throw new WorkerError('invalid-argument', `a session name is 1-64 letters, digits, '.', '_' or '-', not ${JSON.stringify(n)}`);
  }
  return n + '.lfmsession';
}

async function saveSession(name) {
  const file = sessionFile(name);
  const bytes = await engine.saveSession();
  try {
    await writeFile(await sessionDir(true), file, bytes);
  } catch (e) {
    if (e.name === 'QuotaExceededError') {
      throw new WorkerError('out-of-memory', 'not enough storage to keep this session: ' + e.message);
    }
    throw e;
  }
  return { name, bytes: bytes.length };
}

async function loadSession(name) {
  const file = sessionFile(name);
  let bytes;
  try {
    const f = await (await (await sessionDir(false)).getFileHandle(file)).getFile();
    bytes = new Uint8Array(await f.arrayBuffer());
  } catch (e) {
    if (e.name === 'NotFoundError') throw new WorkerError('snapshot', `no saved session named ${JSON.stringify(name)}`);
    throw e;
  }
  return parse(await engine.loadSession(bytes, name));
}

async function listSessions() {
  let dir;
  try {
    dir = await sessionDir(false);
  } catch {
    return [];
  }
  const out = [];
  for await (const [n, h] of dir.entries()) {
    if (n.endsWith('.lfmsession')) out.push({ name: n.slice(0, -11), bytes: (await h.getFile()).size });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

// ---- Requests -----------------------------------------------------------------------------

// What the browser says about its adapter (wgpu's AdapterInfo has no name on the web).
let browserAdapter = null;

async function checkWebGPU() {
  if (!navigator.gpu) {
    throw new WorkerError('no-webgpu', 'this browser has no WebGPU (navigator.gpu is missing)');
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    throw new WorkerError('no-webgpu', 'WebGPU is present but no GPU adapter is available');
  }
  const i = adapter.info || {};
  browserAdapter = { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description };
  return adapter;
}

function withAdapterName(stats) {
  if (stats && stats.adapter && !stats.adapter.name && browserAdapter) {
    const b = browserAdapter;
    stats.adapter.name = [b.vendor, b.architecture, b.device, b.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  }
  return stats;
}

const parse = (s) => (typeof s === 'string' ? JSON.parse(s) : s);

async function handle(msg) {
  await ready;
  if (dead) throw new WorkerError('internal', 'the engine crashed earlier (' + dead + '); reload the page');
  const progress = (phase, done, total) => postMessage({ type: 'progress', id: msg.id, phase, done, total });
  const onToken = (id, text) => postMessage({ type: 'token', id: msg.id, token: id, text });
  switch (msg.op) {
    case 'probe': {
      const gpu = !!navigator.gpu;
      const adapter = gpu ? await checkWebGPU().catch(() => null) : null;
      let info = null;
      if (adapter) {
        const i = adapter.info || {};
        info = {
          vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
          features: [...adapter.features].sort(),
          limits: {
            maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
            maxBufferSize: adapter.limits.maxBufferSize,
            maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
          },
        };
      }
      return { webgpu: gpu, adapter: info, opfs: !!(navigator.storage && navigator.storage.getDirectory) };
    }
    case 'load': {
      await checkWebGPU();
      let blob = msg.source;
      let name = msg.name;
      let cached = false;
      if (typeof blob === 'string') {
        const url = new URL(blob, msg.base || self.location.href).href;
        name = name || decodeURIComponent(url.split('/').pop().split('?')[0]) || 'model.gguf';
        ({ blob, cached } = await download(url, progress, msg.cache !== false));
      }
      name = name || blob.name || 'model.gguf';
      const stats = withAdapterName(parse(await engine.load(blob, name, JSON.stringify(msg.options || {}), progress)));
      stats.cached = cached;
      return stats;
    }
    case 'generate':
      return parse(await engine.generate(JSON.stringify(msg.options || {}), onToken));
    case 'chat':
      return parse(await engine.chat(msg.text, JSON.stringify(msg.options || {}), onToken));
    case 'reset':
      return engine.reset();
    case 'setSystemPrompt':
      return engine.setSystemPrompt(msg.text || undefined);
    case 'stats':
      return withAdapterName(parse(engine.stats()));
    case 'encode':
      return parse(engine.encode(msg.text));
    case 'unload':
      return engine.unload();
    case 'saveSession':
      return saveSession(msg.name);
    case 'loadSession':
      return loadSession(msg.name);
    case 'sessions':
      return listSessions();
    case 'cachedModels':
      return cachedModels();
    case 'clearCache':
      return clearCache();
    default:
      throw new WorkerError('invalid-argument', `unknown request ${msg.op}`);
  }
}

self.onmessage = async (e) => {
  const msg = e.data;
  if (msg.op === 'stop') {
    // Handled at once, while a generation awaits its next token.
    if (engine) engine.stop();
    return;
  }
  try {
    const result = await handle(msg);
    postMessage({ id: msg.id, ok: true, result });
  } catch (err) {
    if (err instanceof WebAssembly.RuntimeError) dead = err.message;
    const kind = (err && err.kind) || (err && err.name === 'QuotaExceededError' ? 'out-of-memory' : 'internal');
    postMessage({ id: msg.id, ok: false, error: { kind, message: String(err && err.message ? err.message : err) } });
  }
};
