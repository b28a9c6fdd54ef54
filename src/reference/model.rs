//! [`CpuModel`]: the whole LFM2 forward pass in plain f32 Rust, one token at a time.
//!
//! Feeding the tokens one by one is exact for a causal model, so there is a single code path
//! (decode) for prompts and generation. The body of [`CpuModel::step`] reads like spec §2.1.

use crate::config::{LayerKind, Lfm2Config};
use crate::error::{Error, Result};
use crate::format::ModelFile;

use super::ops::{
    head_rms_norm, kv_round_trip, matvec, rms_norm, short_conv_step, swiglu, windowed_attention,
};
use crate::ops::attention::KvType;

/// Which keys a token attends to and how they are stored: the policy of the GPU's KV ring
/// (`shaders/kv.wgsl`), stated here on the full history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvPolicy {
    /// Keys a query sees at most; RoPE positions are positions inside this window.
    pub ctx: usize,
    /// When full: `false` = an error, `true` = keep `sinks` first tokens and the most recent.
    pub slide: bool,
    pub sinks: usize,
    /// Keys and values are rounded through this storage format.
    pub kv: KvType,
}

impl Default for KvPolicy {
    /// Unbounded, f32: plain causal attention with absolute positions.
    fn default() -> Self {
        KvPolicy {
            ctx: usize::MAX,
            slide: false,
            sinks: 0,
            kv: KvType::F32,
        }
    }
}

/// Label used in errors that concern the weights handed to [`CpuModel::from_weights`].
const SOURCE: &str = "cpu reference";

/// The mixer-specific weights and state of one layer.
enum Mixer {
    /// Gated short conv (spec §2.3).
    Conv {
        /// `[3H, H]`, output rows `B | C | x`.
        in_proj: Vec<f32>,
        /// `[H, L]`, tap `L-1` = current token.
        conv: Vec<f32>,
        /// `[H, H]`.
        out_proj: Vec<f32>,
        /// `[H, L-1]`: the last `L-1` values of `B ⊙ x` per channel, oldest first.
        state: Vec<f32>,
    },
    /// GQA attention with a growing KV cache (spec §2.4).
    Attention {
        /// `[nh*hd, H]`.
        q: Vec<f32>,
        /// `[nkv*hd, H]`.
        k: Vec<f32>,
        /// `[nkv*hd, H]`.
        v: Vec<f32>,
        /// `[H, nh*hd]`.
        out: Vec<f32>,
        /// `[hd]`.
        q_norm: Vec<f32>,
        /// `[hd]`.
        k_norm: Vec<f32>,
        /// `[position, nkv*hd]`, post-norm keys before RoPE (rotated when attended to), for
        /// every token fed (evicted ones included: the policy picks which are seen).
        k_cache: Vec<f32>,
        /// `[position, nkv*hd]`.
        v_cache: Vec<f32>,
    },
}

/// One pre-norm residual block.
struct Layer {
    /// operator_norm `[H]`.
    attn_norm: Vec<f32>,
    /// `[H]`.
    ffn_norm: Vec<f32>,
    /// w1 `[ff, H]`.
    ffn_gate: Vec<f32>,
    /// w3 `[ff, H]`.
    ffn_up: Vec<f32>,
    /// w2 `[H, ff]`.
    ffn_down: Vec<f32>,
    mixer: Mixer,
}

/// The f32 CPU reference model: weights (dequantized copies) plus the per-sequence state
/// (conv states, KV caches, position). The test oracle for the GPU model; never a fallback.
pub struct CpuModel {
    config: Lfm2Config,
    /// `[V, H]`.
    embed: Vec<f32>,
    /// `[V, H]`; `None` when tied to `embed`.
    output: Option<Vec<f32>>,
    /// The final norm, GGUF `token_embd_norm.weight` `[H]`.
    final_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// Tokens consumed so far.
    position: usize,
    policy: KvPolicy,
}

impl CpuModel {
    /// Loads every tensor of `file` as f32 (dequantizing as needed). Each tensor's shape in the
    /// file's index must be exactly the one the config implies.
    pub fn load(file: &ModelFile) -> Result<CpuModel> {
        let label = file.path.display().to_string();
        let fetch = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let entry = file.tensor(name)?;
            if entry.shape != shape {
                return Err(Error::Shape {
                    file: label.clone(),
                    tensor: name.into(),
                    expected: shape.to_vec(),
                    got: entry.shape.clone(),
                });
            }
            check_len(&label, name, shape, file.tensor_f32(name)?)
        };
        Self::build(&file.config, fetch, file.output_tensor_name())
    }

    /// Builds the model from tensors fetched by GGUF name with `get` (row-major f32 data).
    /// The output head is `token_embd.weight` when `config.tie_embeddings`, else
    /// `output.weight`. Each tensor's length is checked against the shape the config implies.
    pub fn from_weights(
        config: &Lfm2Config,
        mut get: impl FnMut(&str) -> Result<Vec<f32>>,
    ) -> Result<CpuModel> {
        let output = if config.tie_embeddings {
            "token_embd.weight"
        } else {
            "output.weight"
        };
        let fetch = |name: &str, shape: &[usize]| check_len(SOURCE, name, shape, get(name)?);
        Self::build(config, fetch, output)
    }

    /// Fetches every tensor with `fetch(name, expected_shape)`, in spec order.
    fn build(
        config: &Lfm2Config,
        mut fetch: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>,
        output_name: &str,
    ) -> Result<CpuModel> {
        config.validate(SOURCE)?;
        let h = config.hidden_size;
        let (ff, v, l) = (config.ff_size, config.vocab_size, config.conv_kernel);
        let (hd, q_dim, kv_dim) = (config.head_dim, config.q_dim(), config.kv_dim());

        let embed = fetch("token_embd.weight", &[v, h])?;
        let output = if output_name == "token_embd.weight" {
            None
        } else {
            Some(fetch(output_name, &[v, h])?)
        };
        let final_norm = fetch("token_embd_norm.weight", &[h])?;
        let mut layers = Vec::with_capacity(config.num_layers());
        for (i, kind) in config.layers.iter().enumerate() {
            let mut blk =
                |suffix: &str, shape: &[usize]| fetch(&format!("blk.{i}.{suffix}"), shape);
            let mixer = match kind {
                LayerKind::Conv => Mixer::Conv {
                    in_proj: blk("shortconv.in_proj.weight", &[3 * h, h])?,
                    conv: blk("shortconv.conv.weight", &[h, l])?,
                    out_proj: blk("shortconv.out_proj.weight", &[h, h])?,
                    state: vec![0.0; h * (l - 1)],
                },
                LayerKind::Attention => Mixer::Attention {
                    q: blk("attn_q.weight", &[q_dim, h])?,
                    k: blk("attn_k.weight", &[kv_dim, h])?,
                    v: blk("attn_v.weight", &[kv_dim, h])?,
                    out: blk("attn_output.weight", &[h, q_dim])?,
                    q_norm: blk("attn_q_norm.weight", &[hd])?,
                    k_norm: blk("attn_k_norm.weight", &[hd])?,
                    k_cache: Vec::new(),
                    v_cache: Vec::new(),
                },
            };
            layers.push(Layer {
                attn_norm: blk("attn_norm.weight", &[h])?,
                ffn_norm: blk("ffn_norm.weight", &[h])?,
                ffn_gate: blk("ffn_gate.weight", &[ff, h])?,
                ffn_up: blk("ffn_up.weight", &[ff, h])?,
                ffn_down: blk("ffn_down.weight", &[h, ff])?,
                mixer,
            });
        }
        Ok(CpuModel {
            config: config.clone(),
            embed,
            output,
            final_norm,
            layers,
            position: 0,
            policy: KvPolicy::default(),
        })
    }

    pub fn config(&self) -> &Lfm2Config {
        &self.config
    }

    /// Tokens consumed since the last reset (the position the next token will take).
    pub fn position(&self) -> usize {
        self.position
    }

    /// The conv layers' states: per conv layer `[H, L - 1]` (oldest first per channel).
    pub fn conv_states(&self) -> Vec<Vec<f32>> {
        self.layers
            .iter()
            .filter_map(|l| match &l.mixer {
                Mixer::Conv { state, .. } => Some(state.clone()),
                Mixer::Attention { .. } => None,
            })
            .collect()
    }

    /// Sets the KV policy (before feeding tokens, or after a reset).
    pub fn set_kv_policy(&mut self, policy: KvPolicy) {
        self.policy = policy;
    }

    /// Forgets the sequence: zero conv states, empty KV caches, position 0.
    pub fn reset(&mut self) {
        for layer in &mut self.layers {
            match &mut layer.mixer {
                Mixer::Conv { state, .. } => state.fill(0.0),
                Mixer::Attention {
                    k_cache, v_cache, ..
                } => {
                    k_cache.clear();
                    v_cache.clear();
                }
            }
        }
        self.position = 0;
    }

    /// Feeds `ids` one at a time; returns the logits `[V]` after each token.
    /// On an invalid id nothing of that id is consumed (earlier ids stay consumed).
    pub fn forward(&mut self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        ids.iter().map(|&id| self.step(id)).collect()
    }

    /// Feeds one token at the current position; returns the next-token logits `[V]`.
    pub fn step(&mut self, id: u32) -> Result<Vec<f32>> {
        let x = self.hidden_step(id)?;
        let x = rms_norm(&x, &self.final_norm, self.config.norm_eps);
        let head = self.output.as_deref().unwrap_or(&self.embed);
        Ok(matvec(
            head,
            self.config.vocab_size,
            self.config.hidden_size,
            &x,
        ))
    }

    /// Feeds one token and returns the residual stream after the last layer, before the final
    /// norm (`[H]`), for debugging a GPU model layer by layer.
    pub fn hidden_step(&mut self, id: u32) -> Result<Vec<f32>> {
        let c = &self.config;
        let (h, eps) = (c.hidden_size, c.norm_eps);
        let idx = id as usize;
        if idx >= c.vocab_size {
            return Err(Error::InvalidArgument(format!(
                "token id {id} out of range for vocab size {}",
                c.vocab_size
            )));
        }
        let pos = self.position;
        if !self.policy.slide && pos >= self.policy.ctx {
            return Err(Error::InvalidArgument(format!(
                "the context of {} tokens is full",
                self.policy.ctx
            )));
        }
        let mut x = self.embed[idx * h..(idx + 1) * h].to_vec();
        for layer in &mut self.layers {
            // h = x + Mixer(operator_norm(x))
            let xn = rms_norm(&x, &layer.attn_norm, eps);
            let mixed = match &mut layer.mixer {
                Mixer::Conv {
                    in_proj,
                    conv,
                    out_proj,
                    state,
                } => {
                    let bcx = matvec(in_proj, 3 * h, h, &xn);
                    let y = short_conv_step(state, &bcx, conv, h);
                    matvec(out_proj, h, h, &y)
                }
                Mixer::Attention {
                    q,
                    k,
                    v,
                    out,
                    q_norm,
                    k_norm,
                    k_cache,
                    v_cache,
                } => {
                    let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
                    let kvd = nkv * hd;
                    let p = &self.policy;
                    let mut qv = matvec(q, nh * hd, h, &xn);
                    let mut kv = matvec(k, kvd, h, &xn);
                    let mut vv = matvec(v, kvd, h, &xn);
                    head_rms_norm(&mut qv, nh, hd, q_norm, eps);
                    head_rms_norm(&mut kv, nkv, hd, k_norm, eps);
                    kv_round_trip(p.kv, &mut kv, nkv, hd);
                    kv_round_trip(p.kv, &mut vv, nkv, hd);
                    k_cache.extend_from_slice(&kv);
                    v_cache.extend_from_slice(&vv);
                    let sinks = if p.slide { p.sinks } else { 0 };
                    let attn = windowed_attention(
                        &qv,
                        k_cache,
                        v_cache,
                        pos,
                        (p.ctx, sinks),
                        (nh, nkv, hd),
                        c.rope_theta,
                    );
                    matvec(out, h, nh * hd, &attn)
                }
            };
            add_assign(&mut x, &mixed);
            // x = h + MLP(ffn_norm(h))
            let hn = rms_norm(&x, &layer.ffn_norm, eps);
            let gate = matvec(&layer.ffn_gate, c.ff_size, h, &hn);
            let up = matvec(&layer.ffn_up, c.ff_size, h, &hn);
            let mlp = matvec(&layer.ffn_down, h, c.ff_size, &swiglu(&gate, &up));
            add_assign(&mut x, &mlp);
        }
        self.position += 1;
        Ok(x)
    }
}

/// `data` unless its length disagrees with `shape`.
fn check_len(file: &str, name: &str, shape: &[usize], data: Vec<f32>) -> Result<Vec<f32>> {
    if data.len() == shape.iter().product::<usize>() {
        Ok(data)
    } else {
        Err(Error::Shape {
            file: file.into(),
            tensor: name.into(),
            expected: shape.to_vec(),
            got: vec![data.len()],
        })
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-layer (conv, attention) model with deterministic pseudo-random weights.
    fn tiny_config(tie: bool) -> Lfm2Config {
        Lfm2Config {
            vocab_size: 11,
            hidden_size: 8,
            ff_size: 12,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 2,
            layers: vec![LayerKind::Conv, LayerKind::Attention, LayerKind::Conv],
            norm_eps: 1e-5,
            rope_theta: 1e4,
            conv_kernel: 3,
            max_position_embeddings: 64,
            tie_embeddings: tie,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            pad_token_id: Some(0),
        }
    }

    /// Deterministic pseudo-random weights in [-0.5, 0.5), keyed by GGUF name, each with the
    /// length the config asks for.
    fn weights(config: &Lfm2Config) -> impl FnMut(&str) -> Result<Vec<f32>> + '_ {
        move |name: &str| {
            let (h, ff, v) = (config.hidden_size, config.ff_size, config.vocab_size);
            let (q, kv, hd) = (config.q_dim(), config.kv_dim(), config.head_dim);
            let suffix = match name.strip_prefix("blk.") {
                Some(rest) => rest.split_once('.').map_or(rest, |(_, s)| s),
                None => name,
            };
            let n = match suffix {
                "token_embd.weight" | "output.weight" => v * h,
                "token_embd_norm.weight" | "attn_norm.weight" | "ffn_norm.weight" => h,
                "ffn_gate.weight" | "ffn_up.weight" | "ffn_down.weight" => ff * h,
                "shortconv.in_proj.weight" => 3 * h * h,
                "shortconv.conv.weight" => h * config.conv_kernel,
                "shortconv.out_proj.weight" => h * h,
                "attn_q.weight" | "attn_output.weight" => q * h,
                "attn_k.weight" | "attn_v.weight" => kv * h,
                "attn_q_norm.weight" | "attn_k_norm.weight" => hd,
                _ => return Err(Error::tensor("test", name, "unknown")),
            };
            let seed = name
                .bytes()
                .fold(17u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
            Ok((0..n)
                .map(|i| {
                    let r =
                        (seed ^ (i as u32).wrapping_mul(2_654_435_761)).wrapping_mul(2_246_822_519);
                    (r >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect())
        }
    }

    #[test]
    fn runs_resets_and_is_deterministic() {
        let config = tiny_config(true);
        let mut m = CpuModel::from_weights(&config, weights(&config)).unwrap();
        let ids = [1, 5, 3, 9, 0, 10];
        let a = m.forward(&ids).unwrap();
        assert_eq!(m.position(), 6);
        assert_eq!(a.len(), 6);
        assert!(
            a.iter()
                .all(|l| l.len() == 11 && l.iter().all(|v| v.is_finite()))
        );
        m.reset();
        assert_eq!(m.position(), 0);
        let b = m.forward(&ids).unwrap();
        assert_eq!(a, b);
        // Step-by-step equals forward; the state carries over between calls.
        m.reset();
        let first = m.forward(&ids[..2]).unwrap();
        let rest = m.forward(&ids[2..]).unwrap();
        assert_eq!([first, rest].concat(), a);
        // History matters (conv state and KV cache both carry it).
        m.reset();
        let c = m.forward(&[2, 5, 3, 9, 0, 10]).unwrap();
        assert_ne!(a[5], c[5]);
    }

    #[test]
    fn untied_head_is_used() {
        let tied = tiny_config(true);
        let untied = tiny_config(false);
        let mut a = CpuModel::from_weights(&tied, weights(&tied)).unwrap();
        let mut b = CpuModel::from_weights(&untied, weights(&untied)).unwrap();
        assert_ne!(a.step(4).unwrap(), b.step(4).unwrap());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let config = tiny_config(true);
        let mut m = CpuModel::from_weights(&config, weights(&config)).unwrap();
        assert!(matches!(m.step(11), Err(Error::InvalidArgument(_))));
        assert_eq!(m.position(), 0);
        // A wrong-sized tensor is a shape error naming it.
        let mut get = weights(&config);
        let err = CpuModel::from_weights(&config, |name| {
            let mut w = get(name)?;
            if name == "blk.1.attn_k.weight" {
                w.pop();
            }
            Ok(w)
        });
        assert!(
            matches!(err, Err(Error::Shape { ref tensor, .. }) if tensor == "blk.1.attn_k.weight")
        );
        // Missing tensors propagate the getter's error.
        let missing =
            CpuModel::from_weights(&config, |name| Err(Error::tensor("t", name, "missing")));
        assert!(missing.is_err());
        // Bad head grouping is a config error.
        let mut bad = config.clone();
        bad.num_kv_heads = 3;
        assert!(matches!(
            CpuModel::from_weights(&bad, weights(&config)),
            Err(Error::Config { .. })
        ));
    }
}
