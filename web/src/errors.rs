//! Failures as JavaScript `Error`s with a `kind` the page maps to a friendly message. The
//! device's own events (uncaptured errors, loss) are collected by the library (`Gpu::faults`)
//! and arrive here as `lfm::Error`s.

use wasm_bindgen::JsValue;

/// What went wrong, as the page distinguishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No WebGPU in this browser, or no adapter.
    NoWebgpu,
    /// The adapter cannot give the limits this model needs.
    AdapterLimits,
    /// Not a model this engine can load (not GGUF, wrong architecture, unsupported format,
    /// truncated or corrupt).
    UnsupportedFile,
    /// The file could not be read (moved, changed, permission).
    FileRead,
    /// The device ran out of memory.
    OutOfMemory,
    /// The GPU device was lost (driver reset, tab in background too long, ...).
    DeviceLost,
    /// The model has no chat template, or it failed to render.
    Template,
    /// A bad argument (prompt too long for the context, token id outside the vocabulary...).
    InvalidArgument,
    /// A session snapshot that cannot be restored (damaged, another model or version).
    Snapshot,
    /// Another request is running, or no model is loaded.
    Busy,
    NoModel,
    Internal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NoWebgpu => "no-webgpu",
            Kind::AdapterLimits => "adapter-limits",
            Kind::UnsupportedFile => "unsupported-file",
            Kind::FileRead => "file-read",
            Kind::OutOfMemory => "out-of-memory",
            Kind::DeviceLost => "device-lost",
            Kind::Template => "template",
            Kind::InvalidArgument => "invalid-argument",
            Kind::Snapshot => "snapshot",
            Kind::Busy => "busy",
            Kind::NoModel => "no-model",
            Kind::Internal => "internal",
        }
    }
}

/// An error on its way to JavaScript.
#[derive(Debug)]
pub struct WebError {
    pub kind: Kind,
    pub message: String,
}

impl WebError {
    pub fn new(kind: Kind, message: impl Into<String>) -> WebError {
        WebError {
            kind,
            message: message.into(),
        }
    }
}

impl From<lfm::Error> for WebError {
    fn from(e: lfm::Error) -> WebError {
        use lfm::Error as E;
        let kind = match &e {
            E::Io { .. } => Kind::FileRead,
            E::Format { .. }
            | E::Tensor { .. }
            | E::Shape { .. }
            | E::Config { .. }
            | E::Unsupported { .. }
            | E::Tokenizer { .. }
            | E::NeedMoreBytes { .. } => Kind::UnsupportedFile,
            E::Template(_) => Kind::Template,
            E::InvalidArgument(_) => Kind::InvalidArgument,
            E::Snapshot { .. } => Kind::Snapshot,
            E::DeviceLost(_) => Kind::DeviceLost,
            E::OutOfMemory(_) => Kind::OutOfMemory,
            E::Gpu(m) if m.starts_with("no GPU adapter") => Kind::NoWebgpu,
            E::Gpu(m)
                if m.contains("storage buffers per stage")
                    || m.contains("storage-binding limit")
                    || m.starts_with("request_device") =>
            {
                Kind::AdapterLimits
            }
            _ => Kind::Internal,
        };
        WebError::new(kind, e.to_string())
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        let err = js_sys::Error::new(&e.message);
        let _ = js_sys::Reflect::set(&err, &"kind".into(), &e.kind.as_str().into());
        err.into()
    }
}

pub type WebResult<T> = Result<T, WebError>;
