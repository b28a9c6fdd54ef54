//! Chat templates: the Jinja template stored with the model, rendered with minijinja the way
//! transformers' `apply_chat_template` renders it with Python Jinja2:
//! `trim_blocks` and `lstrip_blocks` on, no HTML escaping, Python string methods
//! (minijinja-contrib `pycompat`), `raise_exception(msg)`, and a `tojson` filter that writes
//! exactly what Python's `json.dumps(x, ensure_ascii=False)` writes (separators `", "` and
//! `": "`, key order kept, floats as Python's `repr`).
//!
//! Variables: `messages`, `tools` (none when absent), `add_generation_prompt`, `bos_token`,
//! `eos_token`.

use minijinja::value::{Kwargs, Serde, Value as JValue};
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One chat message. `content` is usually a string; templates `tojson` anything else.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Value,
    /// Assistant tool calls (e.g. `[{"name": ..., "arguments": {...}}]`), passed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: Value::String(content.into()),
            tool_calls: None,
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
    pub fn tool(content: impl Into<String>) -> Self {
        Self::new("tool", content)
    }
    pub fn with_tool_calls(mut self, calls: Value) -> Self {
        self.tool_calls = Some(calls);
        self
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatTemplate")
    }
}

const NAME: &str = "chat_template";

/// Work one render may do (minijinja fuel: about one unit per instruction, per 64 bytes of data
/// created or written, and per item a filter walks). The LFM2 template renders a 1,000-message
/// conversation (500 bytes each) with about 60,000, 5,000 messages with under 400,000
/// (measured; `tests/hostile.rs` renders 1,000). It bounds the time of a hostile template
/// (endless loops) and the memory it can build (about 64 bytes per unit: ~64 MB), which is also
/// the most a render can leak: minijinja frees nothing a template stores inside its own
/// namespace (`{% set ns.x = (ns, 1) %}`, an `Arc` cycle).
pub const FUEL: u64 = 1_000_000;
/// Largest rendered prompt accepted.
pub const MAX_OUTPUT: usize = 8 << 20;
/// Deepest macro / include / recursive-loop nesting (minijinja's default is 500).
pub const MAX_RECURSION: usize = 100;
/// Deepest nesting `tojson` writes (templates can build lists nested without bound).
const MAX_JSON_DEPTH: usize = 128;

fn template_error(e: minijinja::Error) -> Error {
    let mut msg = format!("{e:#}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::Template(msg)
}

impl ChatTemplate {
    /// Compiles `source`. A syntax error is an `Error::Template`.
    pub fn new(source: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(template_error)?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(MAX_RECURSION);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson_filter);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<JValue, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned(NAME, source.to_string())
            .map_err(template_error)?;
        Ok(ChatTemplate { env })
    }

    /// Renders the conversation. `messages` are any serializable maps (`ChatMessage`,
    /// `serde_json::Value`...); `tools` are JSON schemas or strings.
    pub fn render<M: Serialize>(
        &self,
        messages: &[M],
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        let tmpl = self.env.get_template(NAME).map_err(template_error)?;
        let ctx = minijinja::context! {
            messages => JValue::from(Serde(messages)),
            tools => tools.map_or(JValue::from(()), |t| JValue::from(Serde(t))),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
        };
        let mut out = LimitedWriter::default();
        let rendered = tmpl.render_captured_to(ctx, &mut out);
        if out.overflowed {
            return Err(Error::Template(format!(
                "the rendered prompt is larger than {} MiB",
                MAX_OUTPUT >> 20
            )));
        }
        match rendered {
            Ok(_) => String::from_utf8(out.buf)
                .map_err(|_| Error::Template("the rendered prompt is not UTF-8".into())),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Error::Template(format!(
                "rendering ran out of fuel: the template does more than {FUEL} steps of work \
                 (a loop, recursion or string too large for a prompt)"
            ))),
            Err(e) => Err(template_error(e)),
        }
    }
}

/// Collects the output, refusing to grow past [`MAX_OUTPUT`].
#[derive(Default)]
struct LimitedWriter {
    buf: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for LimitedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(b.len()) > MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered prompt too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `tojson(x, indent=None)` as transformers defines it (`json.dumps(x, ensure_ascii=False,
/// indent=indent, sort_keys=False)`).
/// The value is walked first (depth at most [`MAX_JSON_DEPTH`], one unit of fuel per item), so a
/// hostile value is refused before it is copied.
fn tojson_filter(
    state: &State,
    value: JValue,
    kwargs: Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let err = |msg: String| minijinja::Error::new(ErrorKind::InvalidOperation, msg);
    let indent: Option<usize> = kwargs.get("indent")?;
    let _ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let _sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    if indent.is_some_and(|n| n > MAX_INDENT) {
        return Err(err(format!("tojson: indent is more than {MAX_INDENT}")));
    }
    charge_json(state, &value, 0)?;
    let json = serde_json::to_value(&value).map_err(|e| err(format!("tojson: {e}")))?;
    Ok(to_python_json(&json, indent))
}

/// Largest `tojson` indent accepted.
const MAX_INDENT: usize = 64;

/// Walks `value` as `tojson` will, charging one unit of fuel per item (sized containers are
/// charged whole before they are entered) and refusing nesting deeper than [`MAX_JSON_DEPTH`].
fn charge_json(
    state: &State,
    value: &JValue,
    depth: usize,
) -> std::result::Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    if depth > MAX_JSON_DEPTH {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: the value is nested deeper than {MAX_JSON_DEPTH}"),
        ));
    }
    state.consume_fuel(1)?;
    match value.kind() {
        ValueKind::String => state.consume_fuel(value.as_str().map_or(0, str::len) as u64 / 64),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            if let Some(n) = value.len() {
                state.consume_fuel(n as u64)?;
            }
            let is_map = value.kind() == ValueKind::Map;
            for item in value.try_iter()? {
                charge_json(state, &item, depth + 1)?;
                if is_map {
                    charge_json(state, &value.get_item(&item)?, depth + 1)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Python `json.dumps(value, ensure_ascii=False, indent=indent)`.
pub fn to_python_json(value: &Value, indent: Option<usize>) -> String {
    let mut out = String::new();
    write_json(value, indent, 0, &mut out);
    out
}

fn write_json(value: &Value, indent: Option<usize>, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                write_json(v, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(": ");
                write_json(v, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, positional for exponents in
/// [-4, 16), else `d.ddde±XX`.
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let mut sci = format!("{:e}", f.abs());
    // When the shortest digits are a tie, Python rounds half to even and Rust's shortest mode
    // rounds up; Rust's exact mode at the same length rounds like Python.
    let n_digits = sci
        .split('e')
        .next()
        .map_or(0, |m| m.chars().filter(char::is_ascii_digit).count());
    let exact = format!("{:.*e}", n_digits.saturating_sub(1), f.abs());
    if exact.parse::<f64>() == Ok(f.abs()) {
        sci = exact;
    }
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if (point as usize) >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let m = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_json_matches_json_dumps() {
        let v = json!({"name": "f", "b": [1, 2.5, 1e-5, 1e16, 100.0, -0.0], "é": "ü\n\"", "e": {}, "n": null});
        assert_eq!(
            to_python_json(&v, None),
            r#"{"name": "f", "b": [1, 2.5, 1e-05, 1e+16, 100.0, -0.0], "é": "ü\n\"", "e": {}, "n": null}"#
        );
        assert_eq!(
            to_python_json(&json!([1, {"a": []}]), Some(2)),
            "[\n  1,\n  {\n    \"a\": []\n  }\n]"
        );
        assert_eq!(python_float(0.0001), "0.0001");
        assert_eq!(python_float(123456.789), "123456.789");
        assert_eq!(python_float(1.5e300), "1.5e+300");
        // A tie in the shortest digits: Python rounds half to even.
        assert_eq!(
            python_float(985_298_908_721_596.0 + 0.25),
            "985298908721596.2"
        );
    }

    /// Expected strings checked with Python Jinja2 3.1 (trim_blocks, lstrip_blocks).
    #[test]
    fn python_jinja_features() {
        let src = "{%- set ns = namespace(s='') -%}\n{% for m in messages[1:] %}\n  {{ m.role }}:{{ m.content | tojson }}{% if not loop.last %},{% endif %}\n{% endfor %}\n{{ '<b>' }}{{ 'x'.upper() }}{% if tools is none %}N{% endif %}";
        let t = ChatTemplate::new(src).unwrap();
        let msgs = vec![
            ChatMessage::system("s"),
            ChatMessage::user("a<"),
            ChatMessage::assistant("é"),
        ];
        let out = t.render(&msgs, None, false, "", "").unwrap();
        assert_eq!(out, "  user:\"a<\",  assistant:\"é\"<b>XN");
        let err = ChatTemplate::new("{{ raise_exception('bad role') }}")
            .unwrap()
            .render::<ChatMessage>(&[], None, false, "", "")
            .unwrap_err();
        assert!(err.to_string().contains("bad role"), "{err}");
    }
}
