//! The library's error type. Every variant names what went wrong and where (file, tensor, field).

use std::fmt;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file failed.
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    /// The file's structure is malformed (bad magic, truncated, bad offsets, bad UTF-8...).
    #[error("{file}: {msg}")]
    Format { file: String, msg: String },
    /// A tensor is missing, out of bounds, or otherwise unusable.
    #[error("{file}: tensor `{tensor}`: {msg}")]
    Tensor {
        file: String,
        tensor: String,
        msg: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error("{file}: tensor `{tensor}`: expected shape {expected:?}, got {got:?}")]
    Shape {
        file: String,
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A config field is missing, of the wrong type, or out of range.
    #[error("{file}: config field `{field}`: {msg}")]
    Config {
        file: String,
        field: String,
        msg: String,
    },
    /// Something well-formed that this build does not support (a dtype, an architecture...).
    #[error("unsupported {what}: {detail}")]
    Unsupported { what: String, detail: String },
    /// Building or running the tokenizer failed.
    #[error("tokenizer ({source_name}): {msg}")]
    Tokenizer { source_name: String, msg: String },
    /// Rendering the chat template failed.
    #[error("chat template: {0}")]
    Template(String),
    /// No usable GPU adapter, or the adapter cannot run this model.
    #[error("GPU: {0}")]
    Gpu(String),
    /// A shader failed to preprocess, validate or compile.
    #[error("shader `{key}`: {msg}")]
    Shader { key: String, msg: String },
    /// Only a prefix of the file was given and the header continues past it: read at least
    /// `need` bytes and parse again.
    #[error("{file}: the header needs at least {need} bytes, only {have} were given")]
    NeedMoreBytes { file: String, have: u64, need: u64 },
    /// The GPU device was lost (driver reset, device destroyed): create a new engine.
    #[error("the GPU device was lost ({0}); load the model again")]
    DeviceLost(String),
    /// The device memory needed is more than the budget or the device has.
    #[error("out of device memory: {0}")]
    OutOfMemory(String),
    /// A session snapshot is malformed, of another version, or made with another model.
    #[error("session snapshot {file}: {msg}")]
    Snapshot { file: String, msg: String },
    /// An argument given by the caller is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub fn io(path: impl fmt::Display, err: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            err,
        }
    }
    pub fn format(file: impl fmt::Display, msg: impl Into<String>) -> Self {
        Error::Format {
            file: file.to_string(),
            msg: msg.into(),
        }
    }
    pub fn tensor(
        file: impl fmt::Display,
        tensor: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Tensor {
            file: file.to_string(),
            tensor: tensor.into(),
            msg: msg.into(),
        }
    }
    pub fn config(
        file: impl fmt::Display,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Config {
            file: file.to_string(),
            field: field.into(),
            msg: msg.into(),
        }
    }
    pub fn unsupported(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Unsupported {
            what: what.into(),
            detail: detail.into(),
        }
    }
}
