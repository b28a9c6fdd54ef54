//! Session snapshots: the whole state of a session (conv states, KV rings, token ring, position,
//! token history, sampler settings and seed) in one versioned, checksummed byte string.
//!
//! Layout (little endian): `b"LFMSNAP\0"`, version `u32`, header length `u32`, the header as
//! JSON, the device buffers one after another in header order, then an FNV-1a 64 checksum of
//! everything before it. The header names the model (a fingerprint of its config and weights),
//! the session options and each buffer's name and size; loading checks all of it against a fresh
//! session for the same model before a byte reaches the device. Sampling is counter-based (the
//! draw for position `p` depends on the seed and `p` only), so seed and position are the whole
//! RNG state, and a restored session continues exactly as an uninterrupted one.

use std::ops::Range;

use serde_json::{Value, json};

use super::*;
use crate::gpu::ReadbackSlot;
use crate::ops::attention::KvType;

const MAGIC: &[u8; 8] = b"LFMSNAP\0";
/// Bumped on any change of layout or meaning.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Largest header accepted (history of millions of tokens fits).
const MAX_HEADER: usize = 256 << 20;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Session {
    /// Identifies the model a snapshot belongs to: its config, weight bytes and formats.
    fn fingerprint(&self) -> String {
        let m = &self.model;
        let desc = format!(
            "{:?}|{}|{}|{}",
            m.config,
            m.weight_bytes,
            m.embed.format,
            m.head().format
        );
        format!("{:016x}", fnv1a(desc.as_bytes()))
    }

    /// The buffers a snapshot holds, in order.
    fn snapshot_buffers(&self) -> Vec<(String, &wgpu::Buffer)> {
        let mut v = vec![
            ("state".to_string(), &self.s.state),
            ("tokens".to_string(), &self.s.tokens),
        ];
        for (i, (a, b)) in self.s.layer_state.iter().enumerate() {
            match b {
                None => v.push((format!("conv_state.{i}"), a)),
                Some(b) => {
                    v.push((format!("k_ring.{i}"), a));
                    v.push((format!("v_ring.{i}"), b));
                }
            }
        }
        v
    }

    /// Saves the session (blocking; native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self) -> Result<Vec<u8>> {
        crate::platform::block_on(self.save_async())
    }

    /// Saves the session: reads its device state back and returns the snapshot bytes.
    pub async fn save_async(&self) -> Result<Vec<u8>> {
        let gpu = &self.model.gpu;
        let bufs = self.snapshot_buffers();
        let slots: Vec<ReadbackSlot> = bufs
            .iter()
            .map(|(n, b)| ReadbackSlot::new(gpu, &format!("snapshot {n}"), b.size()))
            .collect();
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("lfm snapshot"),
            });
        for ((_, b), slot) in bufs.iter().zip(&slots) {
            slot.copy_from(&mut enc, b, 0);
        }
        let idx = gpu.queue.submit([enc.finish()]);
        for slot in &slots {
            slot.request();
        }
        let refs: Vec<&ReadbackSlot> = slots.iter().collect();
        self.await_slots(&refs, &idx).await?;
        let mut payload = Vec::new();
        let mut list = Vec::new();
        for ((name, b), slot) in bufs.iter().zip(&slots) {
            let bytes = slot.take()?;
            let n = b.size() as usize;
            let data = bytes.get(..n).ok_or_else(|| {
                Error::Gpu(format!("snapshot {name}: read back fewer than {n} bytes"))
            })?;
            payload.extend_from_slice(data);
            list.push(json!({ "name": name, "bytes": n }));
        }
        let o = &self.opts;
        let sp = &self.sampler;
        let header = json!({
            "model": self.fingerprint(),
            "ctx": o.ctx,
            "chunk": o.chunk,
            "kv": o.kv.name(),
            "on_full": o.on_full.name(),
            "sinks": o.sinks,
            "pos": self.pos,
            "undelivered": self.undelivered,
            "history": self.history,
            "sampler": {
                "temperature": sp.temperature,
                "top_k": sp.top_k,
                "top_p": sp.top_p,
                "min_p": sp.min_p,
                "repeat_penalty": sp.repeat_penalty,
                "repeat_last_n": sp.repeat_last_n,
                "seed": sp.seed,
            },
            "buffers": list,
        });
        let header =
            serde_json::to_vec(&header).map_err(|e| Error::Gpu(format!("snapshot header: {e}")))?;
        let mut out = Vec::with_capacity(16 + header.len() + payload.len() + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&payload);
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    /// Recreates a session of `model` from snapshot `bytes` (`name` appears in errors). The
    /// snapshot is checked whole — magic, version, checksum, model, options, every buffer's
    /// size, the position and history — before anything is written to the device.
    pub fn restore(model: Arc<GpuModel>, bytes: &[u8], name: &str) -> Result<Session> {
        let bad = |msg: String| Error::Snapshot {
            file: name.to_string(),
            msg,
        };
        let snap = parse_snapshot(bytes, name)?;
        snap.check(&model.config, name)?;
        let mut session = Session::new(model, snap.opts.clone())?;
        if snap.model != session.fingerprint() {
            return Err(bad(
                "it was saved with a different model (config, weights or formats differ)".into(),
            ));
        }
        let bufs = session.snapshot_buffers();
        if snap.buffers.len() != bufs.len() {
            return Err(bad(format!(
                "{} buffers, a session of this model has {}",
                snap.buffers.len(),
                bufs.len()
            )));
        }
        let mut writes = Vec::with_capacity(bufs.len());
        for (entry, (bname, buf)) in snap.buffers.iter().zip(&bufs) {
            if entry.name != *bname || entry.bytes.len() as u64 != buf.size() {
                return Err(bad(format!(
                    "buffer `{}` of {} bytes where `{bname}` of {} was expected",
                    entry.name,
                    entry.bytes.len(),
                    buf.size()
                )));
            }
            let data = bytes
                .get(entry.bytes.clone())
                .ok_or_else(|| bad(format!("buffer `{bname}` runs past the end of the file")))?;
            writes.push((*buf, data));
        }
        for (buf, data) in writes {
            session.model.gpu.queue.write_buffer(buf, 0, data);
        }
        session.pos = snap.pos;
        session.undelivered = snap.undelivered;
        session.history = snap.history;
        session.set_sampler(snap.sampler)?;
        Ok(session)
    }
}

/// One device buffer of a snapshot: its name and where its bytes lie in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotBuffer {
    pub name: String,
    pub bytes: Range<usize>,
}

/// A snapshot's header and layout, read and checked without a device (magic, version,
/// checksum, header fields, buffer ranges, the device position). [`Session::restore`] reads it
/// with [`parse_snapshot`], checks it against the model ([`SnapshotHeader::check`]) and then
/// against a fresh session's buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotHeader {
    /// Fingerprint of the model it was saved with.
    pub model: String,
    pub opts: SessionOptions,
    pub pos: usize,
    /// The last history token was sampled but not yet delivered to the caller.
    pub undelivered: bool,
    pub history: Vec<u32>,
    pub sampler: SamplerConfig,
    /// The device buffers in file order, the first being `state`.
    pub buffers: Vec<SnapshotBuffer>,
}

/// Reads snapshot `bytes` (`name` appears in errors) as far as can be done without the model:
/// every length is checked against the bytes present before it is used.
pub fn parse_snapshot(bytes: &[u8], name: &str) -> Result<SnapshotHeader> {
    let bad = |msg: String| Error::Snapshot {
        file: name.to_string(),
        msg,
    };
    let word = |at: usize| -> Option<u32> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    };
    if bytes.len() < 24 || bytes.get(..8) != Some(&MAGIC[..]) {
        return Err(bad("not an lfm session snapshot (bad magic)".into()));
    }
    let version = word(8).unwrap_or(0);
    if version != SNAPSHOT_VERSION {
        return Err(bad(format!(
            "format version {version}; this build reads version {SNAPSHOT_VERSION}"
        )));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let sum: [u8; 8] = sum.try_into().unwrap_or_default();
    if fnv1a(body) != u64::from_le_bytes(sum) {
        return Err(bad(
            "checksum mismatch: the file is truncated or corrupt".into()
        ));
    }
    let hlen = word(12).unwrap_or(u32::MAX) as usize;
    let header = (hlen <= MAX_HEADER)
        .then(|| body.get(16..16 + hlen))
        .flatten()
        .ok_or_else(|| bad(format!("header length {hlen} is out of bounds")))?;
    let h: Value = serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
    let field = |k: &str| h.get(k).ok_or_else(|| bad(format!("header lacks `{k}`")));
    let uint = |k: &str| -> Result<usize> {
        field(k)?
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| bad(format!("`{k}` is not an unsigned integer")))
    };
    let text = |k: &str| -> Result<String> {
        field(k)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(format!("`{k}` is not a string")))
    };
    let opts = SessionOptions {
        ctx: uint("ctx")?,
        chunk: uint("chunk")?,
        logits_all: false,
        kv: KvType::parse(&text("kv")?).map_err(|e| bad(e.to_string()))?,
        on_full: OnFull::parse(&text("on_full")?).map_err(|e| bad(e.to_string()))?,
        sinks: uint("sinks")?,
    };
    let pos = uint("pos")?;
    let history: Vec<u32> = field("history")?
        .as_array()
        .ok_or_else(|| bad("`history` is not a list".into()))?
        .iter()
        .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("`history` holds a value that is not a token id".into()))?;
    let sp = field("sampler")?;
    let f = |k: &str| -> Result<f64> {
        sp.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("sampler `{k}` is missing or not a number")))
    };
    let u = |k: &str| -> Result<u64> {
        sp.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("sampler `{k}` is missing or not an integer")))
    };
    let sampler = SamplerConfig {
        temperature: f("temperature")? as f32,
        top_k: u32::try_from(u("top_k")?).map_err(|_| bad("top_k is too large".into()))?,
        top_p: f("top_p")? as f32,
        min_p: f("min_p")? as f32,
        repeat_penalty: f("repeat_penalty")? as f32,
        repeat_last_n: u32::try_from(u("repeat_last_n")?)
            .map_err(|_| bad("repeat_last_n is too large".into()))?,
        seed: u("seed")?,
    };
    sampler.validate().map_err(|e| bad(e.to_string()))?;
    let list = field("buffers")?
        .as_array()
        .ok_or_else(|| bad("`buffers` is not a list".into()))?;
    let mut at = 16 + hlen;
    let mut buffers = Vec::with_capacity(list.len().min(1024));
    for entry in list {
        let ename = entry.get("name").and_then(Value::as_str).unwrap_or("");
        let n = entry.get("bytes").and_then(Value::as_u64);
        let end = n
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| at.checked_add(n))
            .filter(|&end| end <= body.len())
            .ok_or_else(|| bad(format!("buffer `{ename}` runs past the end of the file")))?;
        buffers.push(SnapshotBuffer {
            name: ename.to_string(),
            bytes: at..end,
        });
        at = end;
    }
    if at != body.len() {
        return Err(bad(format!(
            "{} bytes after the last buffer",
            body.len() - at
        )));
    }
    let device_pos = buffers
        .first()
        .filter(|b| b.name == "state")
        .and_then(|b| bytes.get(b.bytes.clone()))
        .and_then(|s| s.get(..4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes);
    match device_pos {
        None => {
            return Err(bad(
                "the first buffer is not a `state` of 4 bytes or more".into()
            ));
        }
        Some(p) if p as usize != pos => {
            return Err(bad("the device position disagrees with the header".into()));
        }
        Some(_) => {}
    }
    let undelivered = h.get("undelivered").and_then(Value::as_bool) == Some(true)
        && pos.checked_add(1) == Some(history.len());
    Ok(SnapshotHeader {
        model: text("model")?,
        opts,
        pos,
        undelivered,
        history,
        sampler,
        buffers,
    })
}

impl SnapshotHeader {
    /// Checks the options, position and history against a model's config (`name` appears in
    /// errors), before any device memory is allocated for them.
    pub fn check(&self, c: &Lfm2Config, name: &str) -> Result<()> {
        let bad = |msg: String| Error::Snapshot {
            file: name.to_string(),
            msg,
        };
        let (opts, pos, history) = (&self.opts, self.pos, &self.history);
        opts.check(c).map_err(|e| bad(e.to_string()))?;
        // The device bytes the session would take, before creating it.
        if opts.device_bytes(c) > (64u64 << 30) {
            return Err(bad("the session it describes is implausibly large".into()));
        }
        if history.len() != pos && history.len() != pos.saturating_add(1) {
            return Err(bad(format!(
                "history of {} tokens does not match position {pos}",
                history.len()
            )));
        }
        if let Some(id) = history.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(bad(format!(
                "history holds token {id}, outside the vocabulary"
            )));
        }
        if opts.on_full == OnFull::Stop && pos > opts.ctx {
            return Err(bad(format!(
                "position {pos} is past the context of {}",
                opts.ctx
            )));
        }
        Ok(())
    }
}
