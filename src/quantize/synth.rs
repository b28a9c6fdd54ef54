//! Random-weight LFM2 models with the released shapes (spec §1.2), written as GGUF files that
//! llama.cpp loads: for benchmarks and tests at real sizes without downloading weights.
//!
//! Weights: matrices (and the embedding) ~ N(0, 1/fan_in) with fan_in the row length, conv
//! kernels ~ N(0, 1/L), norm weights 1 + N(0, 0.01). Every row draws from its own stream seeded
//! by (seed, tensor name, row), so the values do not depend on chunking or threads. Tensors are
//! generated and quantized chunk by chunk, straight into the output file.
//!
//! Tokenizer: byte-level BPE (`gpt2`, pre `lfm2`): LFM2's 14 special tokens at ids 0..14
//! (control), the 256 byte tokens (GPT-2 byte-to-unicode, ordered by character), a few merges
//! and their tokens, then unused `[PAD<id>]` fillers; BOS 1, EOS 7, PAD 0, add_bos; LFM2's chat
//! template.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use super::metadata::{GgufVocab, arch_kv};
use super::stream::{self, Progress, TensorPlan, TensorSource};
use super::{FileType, OutputPlan, SourceTensor, Summary, plan};
use crate::config::{LayerKind, Lfm2Config};
use crate::error::{Error, Result};
use crate::format::{QuantFormat, expected_tensors};

/// LFM2's chat template (spec §4).
pub const LFM2_CHAT_TEMPLATE: &str = include_str!("lfm2_chat_template.jinja");

/// LFM2's special tokens, ids 0..14.
pub const SPECIAL_TOKENS: [&str; 14] = [
    "<|pad|>",
    "<|startoftext|>",
    "<|endoftext|>",
    "<|fim_pre|>",
    "<|fim_mid|>",
    "<|fim_suf|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|tool_list_start|>",
    "<|tool_list_end|>",
    "<|tool_call_start|>",
    "<|tool_call_end|>",
    "<|tool_response_start|>",
    "<|tool_response_end|>",
];

/// A few merges (in the byte-level alphabet; `Ġ` is a space), each part already a token.
const MERGES: [(&str, &str); 12] = [
    ("Ġ", "t"),
    ("h", "e"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ġt", "he"),
    ("r", "e"),
    ("Ġ", "Ġ"),
    ("ĠĠ", "ĠĠ"),
    ("a", "t"),
    ("Ġ", "s"),
];

/// Model sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// hidden 64, 2 layers (c A), FFN 128, 1 head, vocab 320: the smallest model that has
    /// every part of the architecture, for long-running tests.
    Micro,
    /// hidden 256, 6 layers (c c A c A c), FFN 512, 4 heads / 2 KV, vocab 512.
    Tiny,
    M350,
    M700,
    B1_2,
    B2_6,
}

impl Preset {
    pub const ALL: [Preset; 6] = [
        Preset::Micro,
        Preset::Tiny,
        Preset::M350,
        Preset::M700,
        Preset::B1_2,
        Preset::B2_6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Micro => "micro",
            Preset::Tiny => "tiny",
            Preset::M350 => "350m",
            Preset::M700 => "700m",
            Preset::B1_2 => "1.2b",
            Preset::B2_6 => "2.6b",
        }
    }

    /// The model's configuration.
    pub fn config(self) -> Lfm2Config {
        // (hidden, ff, heads, layers, attention layers, vocab, kv heads)
        let (h, ff, heads, n, attn, vocab, kv): (
            usize,
            usize,
            usize,
            usize,
            &[usize],
            usize,
            usize,
        ) = match self {
            Preset::Micro => (64, 128, 1, 2, &[1], 320, 1),
            Preset::Tiny => (256, 512, 4, 6, &[2, 4], 512, 2),
            Preset::M350 => (1024, 4608, 16, 16, &[2, 5, 8, 10, 12, 14], 65536, 8),
            Preset::M700 => (1536, 6912, 24, 16, &[2, 5, 8, 10, 12, 14], 65536, 8),
            Preset::B1_2 => (2048, 8192, 32, 16, &[2, 5, 8, 10, 12, 14], 65536, 8),
            Preset::B2_6 => (
                2048,
                10752,
                32,
                30,
                &[2, 5, 9, 13, 17, 21, 24, 27],
                65536,
                8,
            ),
        };
        Lfm2Config {
            vocab_size: vocab,
            hidden_size: h,
            ff_size: ff,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim: 64,
            layers: (0..n)
                .map(|i| {
                    if attn.contains(&i) {
                        LayerKind::Attention
                    } else {
                        LayerKind::Conv
                    }
                })
                .collect(),
            norm_eps: 1e-5,
            rope_theta: 1e6,
            conv_kernel: 3,
            max_position_embeddings: 128_000,
            tie_embeddings: true,
            bos_token_id: Some(1),
            eos_token_id: Some(7),
            pad_token_id: Some(0),
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Preset, String> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown preset `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// GPT-2's byte-to-unicode map: printable bytes stand for themselves, the others for
/// U+0100 + their rank.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let rank = (0..b).filter(|&c| !printable(c)).count() as u32;
        char::from_u32(0x100 + rank).unwrap_or('?')
    }
}

/// The synthetic tokenizer for a vocabulary of `vocab_size` (at least 14 + 256 + merges).
pub(crate) fn synth_vocab(vocab_size: usize) -> GgufVocab {
    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let mut types = vec![3; tokens.len()];
    let mut bytes: Vec<char> = (0..=255u8).map(byte_char).collect();
    bytes.sort_unstable();
    tokens.extend(bytes.iter().map(char::to_string));
    for (a, b) in MERGES {
        tokens.push(format!("{a}{b}"));
    }
    types.resize(tokens.len(), 1);
    tokens.truncate(vocab_size);
    types.truncate(vocab_size);
    for i in tokens.len()..vocab_size {
        tokens.push(format!("[PAD{i}]"));
        types.push(5);
    }
    let merges = if vocab_size >= SPECIAL_TOKENS.len() + 256 + MERGES.len() {
        MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect()
    } else {
        Vec::new()
    };
    GgufVocab {
        tokens,
        types,
        merges,
        special_ids: vec![("bos", 1), ("eos", 7), ("pad", 0)],
        add_flags: vec![("bos", true), ("sep", false), ("eos", false)],
        chat_template: Some(LFM2_CHAT_TEMPLATE.trim_end_matches('\n').to_string()),
    }
}

/// SplitMix64: small, fast, and good enough for test weights.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 1.0) * (1.0 / (1u64 << 24) as f32)
    }
    /// Fills `out` with N(0, 1) samples (Box-Muller).
    fn fill_normal(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let r = (-2.0 * self.uniform().ln()).sqrt();
            let (s, c) = (std::f32::consts::TAU * self.uniform()).sin_cos();
            pair[0] = r * c;
            if let Some(v) = pair.get_mut(1) {
                *v = r * s;
            }
        }
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

struct SynthSource {
    seed: u64,
}

impl TensorSource for SynthSource {
    fn rows_f32(&self, t: &TensorPlan, rows: Range<usize>, out: &mut Vec<f32>) -> Result<()> {
        let n = t.row_len();
        let (mean, std) = if t.name.ends_with("_norm.weight") {
            (1.0, 0.1)
        } else {
            (0.0, 1.0 / (n as f32).sqrt())
        };
        let base = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ fnv1a(&t.name);
        out.clear();
        out.resize(rows.len() * n, 0.0);
        for (r, row) in rows.zip(out.chunks_exact_mut(n)) {
            let mut rng = Rng(base ^ (r as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            rng.next();
            rng.fill_normal(row);
            for v in row.iter_mut() {
                *v = mean + std * *v;
            }
        }
        Ok(())
    }
}

/// Metadata and tensor plan of a synthetic model.
pub fn synth_plan(preset: Preset, ftype: FileType, seed: u64) -> OutputPlan {
    let config = preset.config();
    let name = format!("LFM2 {preset} synthetic (seed {seed})");
    let shapes = expected_tensors(&config);
    let n_params = shapes
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum();
    let mut kv = arch_kv(&config, &name, n_params, ftype);
    kv.extend(synth_vocab(config.vocab_size).to_kv());
    let sources: Vec<SourceTensor> = shapes
        .into_iter()
        .map(|(name, shape)| SourceTensor {
            name,
            shape,
            format: QuantFormat::F32,
        })
        .collect();
    let (tensors, notes) = plan(ftype, &sources, false);
    OutputPlan {
        metadata: kv,
        tensors,
        notes,
    }
}

/// Writes a synthetic model to `out` (any writer).
pub fn synth_to<W: Write>(
    preset: Preset,
    ftype: FileType,
    seed: u64,
    out: &mut W,
    name: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let OutputPlan {
        metadata: kv,
        tensors,
        notes,
    } = synth_plan(preset, ftype, seed);
    let bytes = stream::write_gguf(out, kv, &tensors, &SynthSource { seed }, name, progress)?;
    Ok(Summary::new(bytes, tensors, notes))
}

/// Writes a synthetic model to the file `path` (removed again on error).
pub fn synth(
    preset: Preset,
    ftype: FileType,
    seed: u64,
    path: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let mut summary = None;
    super::write_file(path, |w, name| {
        let s = synth_to(preset, ftype, seed, w, name, progress)?;
        let bytes = s.bytes;
        summary = Some(s);
        Ok(bytes)
    })?;
    summary.ok_or_else(|| Error::InvalidArgument("synth wrote nothing".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(0), 'Ā');
        assert_eq!(byte_char(0xAD), 'Ń');
        let mut all: Vec<char> = (0..=255u8).map(byte_char).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn merges_use_existing_tokens() {
        let v = synth_vocab(512);
        assert_eq!(v.tokens.len(), 512);
        for m in &v.merges {
            let (a, b) = m.split_once(' ').unwrap();
            let pos = |t: &str| v.tokens.iter().position(|x| x == t);
            let joined = format!("{a}{b}");
            assert!(
                pos(a).is_some() && pos(b).is_some() && pos(&joined).is_some(),
                "{m}"
            );
        }
    }
}
