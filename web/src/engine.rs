//! The engine the worker drives: load a model from a `Blob`, generate or chat with tokens
//! streamed to a callback, stop, reset, stats. Every long operation returns a `Promise` and
//! awaits the browser (file slices, buffer maps, error scopes); nothing blocks, so the worker's
//! event loop keeps running and a `stop()` arrives between tokens.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Function, Promise, Uint8Array};
use lfm::conversation::Conversation;
use lfm::gpu::{Gpu, GpuOptions};
use lfm::model::{GpuModel, UploadOptions};
use lfm::platform::Instant;
use lfm::sampling::SamplerConfig;
use lfm::session::{Session, SessionOptions};
use lfm::tokenizer::{StreamDecoder, Tokenizer};
use serde::Deserialize;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::Blob;

use crate::blob::{BlobSource, open_header};
use crate::errors::{Kind, WebError, WebResult};

thread_local! {
    /// Called with a message when the device is lost outside any request.
    static ON_DEVICE_LOST: RefCell<Option<Function>> = const { RefCell::new(None) };
}

pub(crate) fn notify_device_lost(msg: &str) {
    ON_DEVICE_LOST.with(|f| {
        if let Some(f) = &*f.borrow() {
            let _ = f.call1(&JsValue::NULL, &msg.into());
        }
    });
}

/// Load settings (JSON from JavaScript, camelCase).
#[derive(Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct LoadOptions {
    /// KV capacity in tokens (capped at the model's trained positions).
    ctx: usize,
    /// Largest piece read from the file and uploaded at once, in MiB.
    chunk_mib: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ctx: 4096,
            chunk_mib: 16,
        }
    }
}

/// Generation settings (JSON, camelCase). Defaults follow Liquid's recommendation for LFM2, as
/// the native CLI does: temperature 0.3, min-p 0.15, repetition penalty 1.05 (1 when greedy).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GenOptions {
    /// Token ids fed exactly as given (`generate` only).
    prompt_ids: Option<Vec<u32>>,
    /// Text, tokenized with the model's rule (`generate` only).
    prompt: Option<String>,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_k: Option<u32>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<u64>,
    /// Keep going past end-of-generation tokens.
    ignore_eos: bool,
    /// `generate` only: continue after what the session holds instead of starting over.
    keep_context: bool,
}

impl GenOptions {
    fn sampler(&self) -> SamplerConfig {
        let temperature = self.temperature.unwrap_or(0.3);
        SamplerConfig {
            temperature,
            top_k: self.top_k.unwrap_or(0),
            top_p: self.top_p.unwrap_or(1.0),
            min_p: self.min_p.unwrap_or(0.15),
            repeat_penalty: self.repeat_penalty.unwrap_or(if temperature == 0.0 {
                1.0
            } else {
                1.05
            }),
            repeat_last_n: 64,
            seed: self
                .seed
                .unwrap_or_else(|| (js_sys::Math::random() * 9.007_199_254_740_991e15) as u64),
        }
    }
}

struct Loaded {
    tok: Tokenizer,
    session: Session,
    conversation: Conversation,
}

#[derive(Default)]
struct State {
    loaded: RefCell<Option<Loaded>>,
    busy: Cell<bool>,
    stop: Cell<bool>,
    /// What `stats()` reports: set at load and after each generation.
    info: RefCell<Value>,
    system_prompt: RefCell<Option<String>>,
}

/// The loaded model, taken out of the engine for the life of a request (which holds [`Busy`])
/// and put back when it ends, so no `RefCell` borrow lives across an await.
struct Lent {
    st: Rc<State>,
    loaded: Option<Loaded>,
}

impl Lent {
    fn take(st: &Rc<State>) -> WebResult<Lent> {
        let loaded = st.loaded.borrow_mut().take().ok_or_else(no_model)?;
        Ok(Lent {
            st: st.clone(),
            loaded: Some(loaded),
        })
    }
}

impl std::ops::Deref for Lent {
    type Target = Loaded;
    fn deref(&self) -> &Loaded {
        self.loaded.as_ref().expect("lent model present until drop")
    }
}

impl std::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Loaded {
        self.loaded.as_mut().expect("lent model present until drop")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        *self.st.loaded.borrow_mut() = self.loaded.take();
    }
}

/// Marks the engine busy for the life of a request.
struct Busy(Rc<State>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

fn parse<T: for<'de> Deserialize<'de> + Default>(json: &str) -> WebResult<T> {
    if json.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(json)
        .map_err(|e| WebError::new(Kind::InvalidArgument, format!("options: {e}")))
}

fn promise(f: impl std::future::Future<Output = WebResult<Value>> + 'static) -> Promise {
    future_to_promise(async move {
        match f.await {
            Ok(v) => Ok(JsValue::from_str(&v.to_string())),
            Err(e) => Err(e.into()),
        }
    })
}

/// Like `promise`, for a result of bytes (resolves to a `Uint8Array`).
fn promise_bytes(f: impl std::future::Future<Output = WebResult<Vec<u8>>> + 'static) -> Promise {
    future_to_promise(async move {
        match f.await {
            Ok(v) => Ok(Uint8Array::from(v.as_slice()).into()),
            Err(e) => Err(e.into()),
        }
    })
}

fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| {
            m.buffer()
                .unchecked_into::<js_sys::ArrayBuffer>()
                .byte_length() as f64
        })
        .unwrap_or(0.0)
}

/// The engine. Methods that take time return a `Promise` of a JSON string.
#[wasm_bindgen]
pub struct Engine {
    st: Rc<State>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl Engine {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Engine {
        std::panic::set_hook(Box::new(|info| {
            web_sys::console::error_1(&format!("lfm panicked: {info}").into());
        }));
        Engine {
            st: Rc::new(State::default()),
        }
    }

    /// Calls `f(message)` when the GPU device is lost (the page offers to reload the model).
    #[wasm_bindgen(js_name = onDeviceLost)]
    pub fn on_device_lost(&self, f: Function) {
        ON_DEVICE_LOST.with(|c| *c.borrow_mut() = Some(f));
    }

    /// Loads a GGUF model from `blob` (a `File` or a cached download): parses its header, opens
    /// a device with the limits it needs, uploads the weights tensor by tensor from slices of
    /// the blob, compiles every pipeline. `on_progress(phase, done, total)` with phase
    /// `header`, `upload` (bytes) or `compile`. Resolves to the stats JSON.
    // The library shares the device and the model through `Arc` (threads natively); in the
    // browser there is one thread and wgpu's handles are not `Send`.
    #[allow(clippy::arc_with_non_send_sync)]
    pub fn load(
        &self,
        blob: Blob,
        name: String,
        options: String,
        on_progress: Function,
    ) -> Promise {
        let st = self.st.clone();
        promise(async move {
            let _busy = Busy::take(&st)?;
            let opts: LoadOptions = parse(&options)?;
            // Free the previous model's device memory first.
            *st.loaded.borrow_mut() = None;
            *st.info.borrow_mut() = Value::Null;
            let report = |phase: &str, done: f64, total: f64| {
                let _ =
                    on_progress.call3(&JsValue::NULL, &phase.into(), &done.into(), &total.into());
            };
            let t0 = Instant::now();
            let size = blob.size();
            report("header", 0.0, size);
            let file = open_header(&blob, &name).await?;
            let tok = file.tokenizer()?;
            report("header", size, size);
            let needs = lfm::model::device_needs(&file)?;
            let gpu = Gpu::new(&GpuOptions::default(), &needs).await?;
            // Tell the page at once when the device goes away, even between requests.
            gpu.faults.on_lost(notify_device_lost);
            let gpu = Arc::new(gpu);
            let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let upload = UploadOptions {
                max_binding: None,
                chunk_bytes: Some(opts.chunk_mib.clamp(1, 256) << 20),
            };
            let total = file.weight_bytes() as f64;
            report("upload", 0.0, total);
            let mut src = BlobSource::new(blob, &name);
            let model = GpuModel::upload_from(gpu.clone(), &file, &mut src, &upload, |d, t| {
                report("upload", d as f64, t as f64)
            })
            .await;
            drop(src);
            let upload_s = t0.elapsed().as_secs_f64();
            // Creating the session compiles the decode pipelines; the warm-up below the rest.
            let t_compile = Instant::now();
            let session = model.and_then(|m| {
                let ctx = opts.ctx.clamp(16, lfm::session::max_context(&file.config));
                Session::new(
                    Arc::new(m),
                    SessionOptions {
                        ctx,
                        ..Default::default()
                    },
                )
            });
            if let Some(e) = oom.pop().await {
                return Err(WebError::new(
                    Kind::OutOfMemory,
                    format!("the GPU has not enough memory for this model: {e}"),
                ));
            }
            let mut session = session?;
            gpu.faults.check()?;
            // Compile every pipeline now (decode and prefill variants) by running a two-token
            // prompt, so the first real request does not pay for it; then start clean.
            report("compile", 0.0, 1.0);
            let w = tok.bos_id().unwrap_or(0);
            session
                .generate_async(&[w, w], 2, &|_| false, &mut |_| true)
                .await?;
            session.reset();
            gpu.check_pipelines().await?;
            gpu.faults.check()?;
            report("compile", 1.0, 1.0);
            let compile_s = t_compile.elapsed().as_secs_f64();
            let load_s = t0.elapsed().as_secs_f64();
            let c = &file.config;
            let info = &gpu.info;
            let features: Vec<&str> = gpu.features.iter().filter_map(|f| f.as_str()).collect();
            let weights = session.model().weight_bytes;
            *st.info.borrow_mut() = json!({
                "model": {
                    "name": name,
                    "fileBytes": size,
                    "weightBytes": file.weight_bytes(),
                    "deviceWeightBytes": weights,
                    "layers": c.layers.len(),
                    "hidden": c.hidden_size,
                    "vocab": c.vocab_size,
                    "formats": formats(&file),
                    "chatTemplate": tok.chat_template().is_some(),
                    "ctx": session.options().ctx,
                },
                "adapter": {
                    "name": info.name,
                    "vendor": info.vendor,
                    "device": info.device,
                    "driver": info.driver,
                    "driverInfo": info.driver_info,
                    "backend": format!("{:?}", info.backend),
                    "type": format!("{:?}", info.device_type),
                    "features": features,
                    "shaderF16": gpu.features.contains(wgpu::Features::SHADER_F16),
                    "maxStorageBufferBindingSize": gpu.limits.max_storage_buffer_binding_size,
                    "maxBufferSize": gpu.limits.max_buffer_size,
                },
                "loadSeconds": load_s,
                "uploadSeconds": upload_s,
                "compileSeconds": compile_s,
                "deviceBytes": session.device_bytes(),
                "dispatchesPerToken": session.dispatches_per_token(),
                "position": 0,
                "last": null,
            });
            let conversation = Conversation::new(st.system_prompt.borrow().as_deref());
            *st.loaded.borrow_mut() = Some(Loaded {
                tok,
                session,
                conversation,
            });
            Ok(stats_json(&st))
        })
    }

    /// Generates from `promptIds` (fed as given) or `prompt` (text, tokenized with the model's
    /// rule), starting over unless `keepContext`. `on_token(id, text)` is called for each token
    /// as it is read back. Resolves to `{ids, text, stop, promptTokens, prefillTokS,
    /// decodeTokS, ...}`.
    pub fn generate(&self, options: String, on_token: Function) -> Promise {
        let st = self.st.clone();
        promise(async move {
            let _busy = Busy::take(&st)?;
            let opts: GenOptions = parse(&options)?;
            let mut l = Lent::take(&st)?;
            let prompt = match (&opts.prompt_ids, &opts.prompt) {
                (Some(ids), _) => ids.clone(),
                (None, Some(text)) => l.tok.encode(text)?,
                (None, None) => Vec::new(),
            };
            // With `keepContext` and no prompt, generation continues from the session's
            // pending token (after a stop, or a restored snapshot).
            if prompt.is_empty() && !opts.keep_context {
                return Err(WebError::new(Kind::InvalidArgument, "the prompt is empty"));
            }
            if !opts.keep_context {
                l.session.reset();
                l.conversation.reset();
            }
            run(&st, &mut l, &prompt, &opts, &on_token).await
        })
    }

    /// One chat turn: adds `text` as a user message, renders the model's chat template, feeds
    /// only what the session has not seen, and streams the reply like `generate`.
    pub fn chat(&self, text: String, options: String, on_token: Function) -> Promise {
        let st = self.st.clone();
        promise(async move {
            let _busy = Busy::take(&st)?;
            let opts: GenOptions = parse(&options)?;
            let mut l = Lent::take(&st)?;
            let l = &mut *l;
            let full = l.conversation.push_user(&l.tok, &text)?;
            let done = l.session.reuse_prefix(&full);
            let mut out = run(&st, l, &full[done..], &opts, &on_token).await?;
            let ids: Vec<u32> = serde_json::from_value(out["ids"].clone()).unwrap_or_default();
            let reply = l.conversation.push_reply(&l.tok, &ids)?;
            out["reply"] = reply.into();
            out["reusedTokens"] = done.into();
            Ok(out)
        })
    }

    /// Snapshot of the session (KV ring, conv states, position, token history, sampler): a
    /// `Uint8Array` that `loadSession` restores exactly (the worker keeps it in the Origin
    /// Private File System).
    #[wasm_bindgen(js_name = saveSession)]
    pub fn save_session(&self) -> Promise {
        let st = self.st.clone();
        promise_bytes(async move {
            let _busy = Busy::take(&st)?;
            let l = Lent::take(&st)?;
            l.session.model().gpu.faults.check()?;
            Ok(l.session.save_async().await?)
        })
    }

    /// Restores a snapshot made by `saveSession` with the same model; generation then continues
    /// exactly where it was saved (`generate` with `keepContext` and no prompt). The chat
    /// conversation starts over. A snapshot of another model, another version or a damaged
    /// one is refused with a clear error and the current session is kept.
    #[wasm_bindgen(js_name = loadSession)]
    pub fn load_session(&self, bytes: Uint8Array, name: String) -> Promise {
        let st = self.st.clone();
        promise(async move {
            let _busy = Busy::take(&st)?;
            let mut l = Lent::take(&st)?;
            let session = Session::restore(l.session.shared_model(), &bytes.to_vec(), &name)?;
            l.session.model().gpu.faults.check()?;
            l.session = session;
            l.conversation.reset();
            let pos = l.session.position();
            if let Some(i) = st.info.borrow_mut().as_object_mut() {
                i.insert("position".into(), pos.into());
                i.insert("deviceBytes".into(), l.session.device_bytes().into());
            }
            drop(l);
            Ok(stats_json(&st))
        })
    }

    /// Asks a running generation to stop after the token being read back.
    pub fn stop(&self) {
        self.st.stop.set(true);
    }

    /// Forgets the conversation and the session's context (the model stays loaded).
    pub fn reset(&self) -> Result<(), JsValue> {
        let _busy = Busy::take(&self.st)?;
        if let Some(l) = self.st.loaded.borrow_mut().as_mut() {
            l.session.reset();
            l.conversation.reset();
        }
        if let Some(i) = self.st.info.borrow_mut().as_object_mut() {
            i.insert("position".into(), 0.into());
        }
        Ok(())
    }

    /// Sets the system prompt for the next conversation (and starts one).
    #[wasm_bindgen(js_name = setSystemPrompt)]
    pub fn set_system_prompt(&self, text: Option<String>) -> Result<(), JsValue> {
        let _busy = Busy::take(&self.st)?;
        let text = text.filter(|t| !t.trim().is_empty());
        if let Some(l) = self.st.loaded.borrow_mut().as_mut() {
            l.session.reset();
            l.conversation = Conversation::new(text.as_deref());
        }
        *self.st.system_prompt.borrow_mut() = text;
        Ok(())
    }

    /// Tokenizes `text` with the model's rule (JSON array of ids).
    pub fn encode(&self, text: String) -> Result<String, JsValue> {
        if self.st.busy.get() {
            return Err(busy().into());
        }
        let guard = self.st.loaded.borrow();
        let l = guard.as_ref().ok_or_else(no_model)?;
        let ids = l.tok.encode(&text).map_err(WebError::from)?;
        Ok(json!(ids).to_string())
    }

    /// Stats JSON: the model, the adapter and its features, device and wasm memory, load time,
    /// the last generation's rates.
    pub fn stats(&self) -> String {
        stats_json(&self.st).to_string()
    }

    /// Frees the model and its device.
    pub fn unload(&self) -> Result<(), JsValue> {
        let _busy = Busy::take(&self.st)?;
        *self.st.loaded.borrow_mut() = None;
        *self.st.info.borrow_mut() = Value::Null;
        Ok(())
    }
}

fn no_model() -> WebError {
    WebError::new(Kind::NoModel, "no model is loaded")
}

fn busy() -> WebError {
    WebError::new(Kind::Busy, "the engine is busy with another request")
}

impl Busy {
    fn take(st: &Rc<State>) -> WebResult<Busy> {
        if st.busy.replace(true) {
            return Err(busy());
        }
        Ok(Busy(st.clone()))
    }
}

fn formats(file: &lfm::ModelFile) -> Vec<String> {
    let mut f: Vec<String> = file
        .tensors
        .values()
        .map(|t| t.format.to_string())
        .collect();
    f.sort();
    f.dedup();
    f
}

fn stats_json(st: &State) -> Value {
    let mut v = st.info.borrow().clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("wasmMemoryBytes".into(), wasm_memory_bytes().into());
        o.insert("busy".into(), st.busy.get().into());
    } else {
        v = json!({ "wasmMemoryBytes": wasm_memory_bytes(), "busy": st.busy.get() });
    }
    v
}

/// Runs one generation on the loaded session, streaming each token to `on_token`.
async fn run(
    st: &State,
    l: &mut Loaded,
    prompt: &[u32],
    opts: &GenOptions,
    on_token: &Function,
) -> WebResult<Value> {
    l.session.model().gpu.faults.check()?;
    l.session.set_sampler(opts.sampler())?;
    st.stop.set(false);
    let max = opts.max_tokens.unwrap_or(256);
    let tok = &l.tok;
    let ignore_eos = opts.ignore_eos;
    let eog = |id: u32| !ignore_eos && tok.is_eog(id);
    let mut dec = StreamDecoder::new(true);
    let mut text = String::new();
    let mut failed: Option<JsValue> = None;
    let stats = l
        .session
        .generate_async(prompt, max, &eog, &mut |id| {
            let piece = dec.push(tok, id).unwrap_or_default();
            text.push_str(&piece);
            if let Err(e) = on_token.call2(&JsValue::NULL, &id.into(), &piece.into()) {
                failed = Some(e);
                return false;
            }
            !st.stop.get()
        })
        .await?;
    let tail = dec.finish(tok)?;
    if !tail.is_empty() {
        let _ = on_token.call2(&JsValue::NULL, &JsValue::NULL, &tail.clone().into());
        text.push_str(&tail);
    }
    l.session.model().gpu.faults.check()?;
    if let Some(e) = failed {
        web_sys::console::error_2(&"on_token threw".into(), &e);
    }
    let last = json!({
        "ids": stats.generated,
        "text": text,
        "stop": stats.stop.as_str(),
        "promptTokens": stats.prompt_tokens,
        "generatedTokens": stats.generated.len(),
        "prefillSeconds": stats.prefill_seconds,
        "decodeSeconds": stats.decode_seconds,
        "prefillTokS": stats.prefill_tok_s(),
        "decodeTokS": stats.decode_tok_s(),
        "position": l.session.position(),
    });
    if let Some(i) = st.info.borrow_mut().as_object_mut() {
        i.insert("last".into(), last.clone());
        i.insert("position".into(), l.session.position().into());
        i.insert("deviceBytes".into(), l.session.device_bytes().into());
    }
    Ok(last)
}
