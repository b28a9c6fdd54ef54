// lfm.js: LFM2 on WebGPU from a web page. The engine runs in a Web Worker (worker.js), so the
// page never freezes; this module is its page-side API.
//
//   import { createEngine } from './lfm.js';
//   const engine = await createEngine();
//   await engine.load(fileOrBlobOrUrl, { onProgress: (p) => console.log(p.phase, p.done, p.total) });
//   const stream = engine.chat('Hello!', { maxTokens: 128, temperature: 0.3 });
//   for await (const t of stream) output.textContent += t.text;
//   const result = await stream.result;   // {ids, text, stop, prefillTokS, decodeTokS, ...}
//   engine.stop(); await engine.reset(); await engine.stats(); await engine.clearCache();
//
// Every failure is an LfmError whose `kind` is one of: no-webgpu, adapter-limits,
// unsupported-file, file-read, download, out-of-memory, device-lost, template,
// invalid-argument, snapshot, busy, no-model, internal.

export class LfmError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'LfmError';
    this.kind = kind;
  }
}

// Tokens of one generation: an async iterator of {id, text} plus `result`, a promise of the
// generation's summary. Text that completes no character yet comes with a later token.
class TokenStream {
  constructor() {
    this._queue = [];
    this._waiters = [];
    this._done = false;
    this.result = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.result.catch(() => {}); // reported through the iterator too
    this._error = null;
  }
  _push(item) {
    const w = this._waiters.shift();
    if (w) w.resolve({ value: item, done: false });
    else this._queue.push(item);
  }
  _end(err, result) {
    this._done = true;
    this._error = err;
    if (err) this._reject(err);
    else this._resolve(result);
    for (const w of this._waiters.splice(0)) {
      if (err) w.reject(err);
      else w.resolve({ value: undefined, done: true });
    }
  }
  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this._queue.length) return Promise.resolve({ value: this._queue.shift(), done: false });
        if (this._done) {
          return this._error ? Promise.reject(this._error) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
      },
    };
  }
}

export class LfmEngine {
  constructor({ workerUrl } = {}) {
    this._worker = new Worker(workerUrl || new URL('./worker.js', import.meta.url), { type: 'module' });
    this._next = 1;
    this._pending = new Map();
    this._deviceLost = [];
    this._worker.onmessage = (e) => this._onMessage(e.data);
    this._worker.onerror = (e) => {
      const err = new LfmError('internal', 'the engine worker stopped: ' + (e.message || 'unknown error'));
      for (const p of this._pending.values()) p.reject(err);
      this._pending.clear();
    };
  }

  _onMessage(m) {
    if (m.type === 'device-lost') {
      for (const f of this._deviceLost) f(m.message);
      return;
    }
    const p = this._pending.get(m.id);
    if (!p) return;
    if (m.type === 'progress') {
      if (p.onProgress) p.onProgress({ phase: m.phase, done: m.done, total: m.total });
    } else if (m.type === 'token') {
      if (p.stream) p.stream._push({ id: m.token, text: m.text });
    } else {
      this._pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new LfmError(m.error.kind, m.error.message));
    }
  }

  _call(op, args = {}, extra = {}) {
    const id = this._next++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, ...extra });
      this._worker.postMessage({ id, op, ...args });
    });
  }

  _stream(op, args) {
    const stream = new TokenStream();
    this._call(op, args, { stream }).then(
      (r) => stream._end(null, r),
      (e) => stream._end(e),
    );
    return stream;
  }

  /** WebGPU availability and the adapter the browser offers (before any model is loaded). */
  probe() {
    return this._call('probe');
  }

  /**
   * Loads a GGUF model: a File or Blob (read in slices, never whole), or a URL (downloaded once
   * into the Origin Private File System cache, then read from there). Options: onProgress({phase:
   * 'download'|'header'|'upload'|'compile', done, total}), ctx (context tokens), cache (false to
   * skip the cache), name. Resolves to the stats.
   */
  load(source, { onProgress, ctx, cache = true, name } = {}) {
    const options = {};
    if (ctx) options.ctx = ctx;
    return this._call('load', { source, name, cache, options, base: location.href }, { onProgress });
  }

  /**
   * Generates from {promptIds} (fed as given) or {prompt} (text), starting over unless
   * keepContext. Settings: maxTokens, temperature (0 = greedy), topK, topP, minP,
   * repeatPenalty, seed, ignoreEos. Returns a TokenStream.
   */
  generate(options) {
    return this._stream('generate', { options });
  }

  /** One chat turn with the model's chat template; the conversation is kept. A TokenStream. */
  chat(text, options = {}) {
    return this._stream('chat', { text, options });
  }

  /** Stops the running generation after the current token. */
  stop() {
    this._worker.postMessage({ op: 'stop' });
  }

  /** Forgets the conversation (the model stays loaded). */
  reset() {
    return this._call('reset');
  }

  setSystemPrompt(text) {
    return this._call('setSystemPrompt', { text });
  }

  /** {model, adapter: {name, backend, features, shaderF16, ...}, loadSeconds, deviceBytes,
   * wasmMemoryBytes, position, last: {prefillTokS, decodeTokS, ...}} */
  stats() {
    return this._call('stats');
  }

  encode(text) {
    return this._call('encode', { text });
  }

  unload() {
    return this._call('unload');
  }

  /**
   * Saves the session (KV ring, conv states, position, token history, sampler settings) under
   * `name` in the Origin Private File System. Resolves to {name, bytes}.
   */
  saveSession(name) {
    return this._call('saveSession', { name });
  }

  /**
   * Restores a session saved with saveSession (same model). Continue it exactly with
   * generate({keepContext: true, ...}) and no prompt. A damaged snapshot, or one of another
   * model, fails with kind 'snapshot' and leaves the current session as it was.
   */
  loadSession(name) {
    return this._call('loadSession', { name });
  }

  /** Saved sessions: [{name, bytes}]. */
  sessions() {
    return this._call('sessions');
  }

  /** Models downloaded into the cache: [{url, bytes, savedAt}]. */
  cachedModels() {
    return this._call('cachedModels');
  }

  clearCache() {
    return this._call('clearCache');
  }

  onDeviceLost(f) {
    this._deviceLost.push(f);
  }

  terminate() {
    this._worker.terminate();
  }
}

export async function createEngine(options) {
  const engine = new LfmEngine(options);
  await engine.probe();
  return engine;
}
