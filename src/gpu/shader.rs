//! WGSL sources, a small strict preprocessor, and naga validation.
//!
//! The preprocessor knows `#include "file"` (with `{VAR}` substitution in the path), and
//! `#if NAME` / `#elif NAME` / `#else` / `#endif`. Every name tested must be declared by the
//! kernel's key, true or false: an unknown name is an error, never a silent `false`. Numbers
//! (sizes, eps, workgroup sizes) are WGSL `override` constants, not preprocessor text.

use crate::error::{Error, Result};

/// Every WGSL file, embedded so the browser build needs no file system.
pub const SOURCES: &[(&str, &str)] = &[
    ("common.wgsl", include_str!("../../shaders/common.wgsl")),
    (
        "formats/f32.wgsl",
        include_str!("../../shaders/formats/f32.wgsl"),
    ),
    (
        "formats/f16.wgsl",
        include_str!("../../shaders/formats/f16.wgsl"),
    ),
    (
        "formats/bf16.wgsl",
        include_str!("../../shaders/formats/bf16.wgsl"),
    ),
    (
        "formats/q4_0.wgsl",
        include_str!("../../shaders/formats/q4_0.wgsl"),
    ),
    (
        "formats/q8_0.wgsl",
        include_str!("../../shaders/formats/q8_0.wgsl"),
    ),
    (
        "formats/kquant_common.wgsl",
        include_str!("../../shaders/formats/kquant_common.wgsl"),
    ),
    (
        "formats/q4_K.wgsl",
        include_str!("../../shaders/formats/q4_K.wgsl"),
    ),
    (
        "formats/q5_K.wgsl",
        include_str!("../../shaders/formats/q5_K.wgsl"),
    ),
    (
        "formats/q6_K.wgsl",
        include_str!("../../shaders/formats/q6_K.wgsl"),
    ),
    ("embed.wgsl", include_str!("../../shaders/embed.wgsl")),
    ("rms_norm.wgsl", include_str!("../../shaders/rms_norm.wgsl")),
    ("gemv.wgsl", include_str!("../../shaders/gemv.wgsl")),
    ("gemm.wgsl", include_str!("../../shaders/gemm.wgsl")),
    (
        "short_conv.wgsl",
        include_str!("../../shaders/short_conv.wgsl"),
    ),
    ("kv.wgsl", include_str!("../../shaders/kv.wgsl")),
    (
        "attn_prep.wgsl",
        include_str!("../../shaders/attn_prep.wgsl"),
    ),
    (
        "attn_prefill.wgsl",
        include_str!("../../shaders/attn_prefill.wgsl"),
    ),
    (
        "attn_decode.wgsl",
        include_str!("../../shaders/attn_decode.wgsl"),
    ),
    (
        "attn_reduce.wgsl",
        include_str!("../../shaders/attn_reduce.wgsl"),
    ),
    ("sample.wgsl", include_str!("../../shaders/sample.wgsl")),
    ("advance.wgsl", include_str!("../../shaders/advance.wgsl")),
    ("copy.wgsl", include_str!("../../shaders/copy.wgsl")),
];

fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// What a kernel variant asks of the preprocessor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Defines {
    /// Names usable in `#if`, each true or false.
    pub flags: Vec<(&'static str, bool)>,
    /// `{NAME}` substitutions in `#include` paths.
    pub vars: Vec<(&'static str, &'static str)>,
}

impl Defines {
    pub fn flag(mut self, name: &'static str, on: bool) -> Self {
        self.flags.push((name, on));
        self
    }
    pub fn var(mut self, name: &'static str, value: &'static str) -> Self {
        self.vars.push((name, value));
        self
    }
}

/// Expands `file` with `defines`; errors name the file and line.
pub fn preprocess(file: &str, defines: &Defines) -> Result<String> {
    let mut out = String::new();
    expand(file, defines, &mut out, 0)?;
    Ok(out)
}

fn expand(file: &str, d: &Defines, out: &mut String, depth: usize) -> Result<()> {
    let err = |line: usize, msg: String| Error::Shader {
        key: format!("{file}:{line}"),
        msg,
    };
    if depth > 8 {
        return Err(err(0, "includes nested too deeply".into()));
    }
    let text = source(file).ok_or_else(|| err(0, format!("no shader source named `{file}`")))?;
    // Stack of (this branch active, some branch of this #if already taken, parent active).
    let mut stack: Vec<(bool, bool, bool)> = Vec::new();
    let active = |stack: &Vec<(bool, bool, bool)>| stack.last().is_none_or(|s| s.0);
    let flag = |name: &str, line: usize| -> Result<bool> {
        d.flags
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                err(
                    line,
                    format!("`#if {name}`: `{name}` is not declared by this kernel"),
                )
            })
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if let Some(rest) = t.strip_prefix("#if ") {
            let parent = active(&stack);
            let v = flag(rest.trim(), line)?;
            stack.push((parent && v, v, parent));
        } else if let Some(rest) = t.strip_prefix("#elif ") {
            let v = flag(rest.trim(), line)?;
            let top = stack
                .last_mut()
                .ok_or_else(|| err(line, "#elif without #if".into()))?;
            let take = top.2 && !top.1 && v;
            top.0 = take;
            top.1 |= v;
        } else if t == "#else" {
            let top = stack
                .last_mut()
                .ok_or_else(|| err(line, "#else without #if".into()))?;
            top.0 = top.2 && !top.1;
            top.1 = true;
        } else if t == "#endif" {
            stack
                .pop()
                .ok_or_else(|| err(line, "#endif without #if".into()))?;
        } else if let Some(rest) = t.strip_prefix("#include ") {
            if active(&stack) {
                let mut path = rest.trim().trim_matches('"').to_string();
                for (k, v) in &d.vars {
                    path = path.replace(&format!("{{{k}}}"), v);
                }
                if path.contains('{') {
                    return Err(err(
                        line,
                        format!("unresolved variable in include `{path}`"),
                    ));
                }
                expand(&path, d, out, depth + 1)?;
            }
        } else if t.starts_with('#') {
            return Err(err(line, format!("unknown directive `{t}`")));
        } else if active(&stack) {
            out.push_str(raw);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(err(text.lines().count(), "missing #endif".into()));
    }
    Ok(())
}

/// Parses and validates WGSL with naga alone (no GPU), as a test and as an early, readable error
/// before pipeline creation.
pub fn validate(label: &str, wgsl: &str) -> Result<()> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| Error::Shader {
        key: label.to_string(),
        msg: e.emit_to_string(wgsl),
    })?;
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        // Core WebGPU: pack/unpack2x16float are in WGSL core, nothing else optional.
        naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
    );
    v.validate(&module).map_err(|e| Error::Shader {
        key: label.to_string(),
        msg: e.emit_to_string(wgsl),
    })?;
    Ok(())
}
