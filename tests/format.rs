//! Model files: GGUF and Hugging Face directories agree; every bad input is a clear error
//! naming the file and the tensor or field.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lfm::format::gguf::{GgufFile, GgufType, GgufValue, GgufWriter};
use lfm::format::{ModelFile, expected_tensors};
use lfm::{Error, LayerKind};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("lfm-format-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A writer holding a copy of a fixture GGUF (metadata and tensors).
fn writer_from(path: &Path) -> Result<GgufWriter> {
    let bytes = std::fs::read(path)?;
    let g = GgufFile::parse(&bytes, bytes.len() as u64, &path.display().to_string())?;
    let mut w = GgufWriter::new();
    w.metadata = g.metadata.clone();
    for t in &g.tensors {
        let start = (g.data_offset + t.offset) as usize;
        let data = bytes[start..start + t.size as usize].to_vec();
        w.add_tensor(&t.name, &t.ne, t.ggml_type, data);
    }
    Ok(w)
}

fn tiny_a_writer() -> Result<GgufWriter> {
    writer_from(&fixtures().join("tiny-a-f32.gguf"))
}

/// Opens crafted GGUF bytes, expecting an error; returns its message.
fn open_err(bytes: Vec<u8>, name: &str) -> String {
    match ModelFile::from_gguf_bytes(bytes, name) {
        Ok(_) => panic!("{name}: expected an error, the file opened"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(
            msg.contains(p),
            "error message `{msg}` should mention `{p}`"
        );
    }
}

#[test]
fn gguf_and_hf_agree_on_tiny_a() -> Result<()> {
    let dir = ModelFile::open(&fixtures().join("tiny-a"))?;
    let f32 = ModelFile::open(&fixtures().join("tiny-a-f32.gguf"))?;
    let f16 = ModelFile::open(&fixtures().join("tiny-a-f16.gguf"))?;
    assert_eq!(dir.config, f32.config);
    assert_eq!(dir.config, f16.config);
    let c = &dir.config;
    assert_eq!(c.layer_pattern(), "ccAcAc");
    assert_eq!(
        (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim),
        (64, 4, 2, 16)
    );
    assert!(c.tie_embeddings);
    assert_eq!(dir.output_tensor_name(), "token_embd.weight");
    assert_eq!(f32.output_tensor_name(), "token_embd.weight");

    let names: Vec<&String> = dir.tensors.keys().collect();
    assert_eq!(names, f32.tensors.keys().collect::<Vec<_>>());
    assert_eq!(names, f16.tensors.keys().collect::<Vec<_>>());
    let mut expected: Vec<String> = expected_tensors(c).into_iter().map(|(n, _)| n).collect();
    expected.sort();
    assert_eq!(names, expected.iter().collect::<Vec<_>>());

    for name in dir.tensors.keys() {
        let a = dir.tensor_f32(name)?;
        let b = f32.tensor_f32(name)?;
        let h = f16.tensor_f32(name)?;
        assert_eq!(dir.tensor(name)?.shape, f32.tensor(name)?.shape, "{name}");
        assert_eq!(a, b, "{name}: HF f32 and GGUF f32 differ");
        for (x, y) in a.iter().zip(&h) {
            assert!(
                (x - y).abs() <= 1e-3 * x.abs().max(1e-2),
                "{name}: {x} vs f16 {y}"
            );
        }
        assert_eq!(f32.tensor_bytes(name)?.len(), 4 * a.len());
    }
    assert_eq!(dir.weight_bytes(), f32.weight_bytes());
    assert!(f16.weight_bytes() < f32.weight_bytes());
    let summary = f32.metadata_summary();
    assert!(
        summary
            .iter()
            .any(|(k, v)| k == "general.architecture" && v.contains("lfm2"))
    );
    assert!(
        dir.metadata_summary()
            .iter()
            .any(|(k, _)| k == "hidden_size")
    );
    Ok(())
}

#[test]
fn sharded_bf16_dir_matches_gguf_with_legacy_keys() -> Result<()> {
    let dir = ModelFile::open(&fixtures().join("tiny-b"))?;
    let gguf = ModelFile::open(&fixtures().join("tiny-b-bf16.gguf"))?;
    assert_eq!(dir.config, gguf.config);
    let c = &dir.config;
    // block_ff_dim 76, auto-adjust, multiple_of 8: int(2*76/3) = 50 -> 56.
    assert_eq!(c.ff_size, 56);
    assert_eq!(
        c.layers,
        [
            LayerKind::Attention,
            LayerKind::Conv,
            LayerKind::Conv,
            LayerKind::Attention,
            LayerKind::Conv
        ]
    );
    assert_eq!(c.num_kv_heads, 1);
    assert_eq!(c.rope_theta, 1e6);
    assert!(c.tie_embeddings);
    assert_eq!(
        dir.tensors.keys().collect::<Vec<_>>(),
        gguf.tensors.keys().collect::<Vec<_>>()
    );
    for name in dir.tensors.keys() {
        assert_eq!(dir.tensor(name)?.format, lfm::QuantFormat::BF16, "{name}");
        assert_eq!(dir.tensor_f32(name)?, gguf.tensor_f32(name)?, "{name}");
        if gguf.tensor(name)?.format == lfm::QuantFormat::BF16 {
            assert_eq!(dir.tensor_bytes(name)?, gguf.tensor_bytes(name)?, "{name}");
        }
    }
    Ok(())
}

#[test]
fn metadata_round_trips_every_type() -> Result<()> {
    let values = vec![
        ("a.u8", GgufValue::U8(200)),
        ("a.i8", GgufValue::I8(-5)),
        ("a.u16", GgufValue::U16(60000)),
        ("a.i16", GgufValue::I16(-30000)),
        ("a.u32", GgufValue::U32(4_000_000_000)),
        ("a.i32", GgufValue::I32(-7)),
        ("a.f32", GgufValue::F32(1.5e-5)),
        ("a.bool", GgufValue::Bool(true)),
        ("a.str", GgufValue::String("héllo <|im_end|>".into())),
        ("a.u64", GgufValue::U64(u64::MAX)),
        ("a.i64", GgufValue::I64(i64::MIN)),
        ("a.f64", GgufValue::F64(-2.25)),
        (
            "a.arr",
            GgufValue::Array(GgufType::I32, vec![GgufValue::I32(0), GgufValue::I32(8)]),
        ),
        ("a.empty", GgufValue::Array(GgufType::String, vec![])),
        (
            "a.nested",
            GgufValue::Array(
                GgufType::Array,
                vec![
                    GgufValue::Array(GgufType::String, vec![GgufValue::String("x".into())]),
                    GgufValue::Array(GgufType::U8, vec![GgufValue::U8(1), GgufValue::U8(2)]),
                ],
            ),
        ),
        ("general.alignment", GgufValue::U32(64)),
    ];
    for version in [2, 3] {
        let mut w = GgufWriter::new();
        w.version = version;
        for (k, v) in &values {
            w.set(k, v.clone());
        }
        w.add_tensor("t", &[4, 2], 0, vec![0u8; 32]);
        let bytes = w.to_bytes();
        let g = GgufFile::parse(&bytes, bytes.len() as u64, "rt.gguf")?;
        assert_eq!(g.version, version);
        assert_eq!(g.alignment, 64);
        assert_eq!(g.data_offset % 64, 0);
        for (k, v) in &values {
            assert_eq!(g.get(k), Some(v), "{k}");
        }
        assert_eq!(g.get_u32("a.u8")?, Some(200));
        let msg = g.get_u32("a.i8").unwrap_err().to_string();
        assert!(msg.contains("a.i8") && msg.contains("rt.gguf"), "{msg}");
        assert_eq!(g.get_u64("a.u64")?, Some(u64::MAX));
        assert!(g.get_u32("a.u64").is_err());
        assert_eq!(g.get_f32("a.f64")?, Some(-2.25));
        assert_eq!(g.get_u32_arr("a.arr")?, Some(vec![0, 8]));
        assert_eq!(g.get_str("a.str")?, Some("héllo <|im_end|>"));
        assert!(g.get_str("a.u8").is_err());
        assert_eq!(g.get_u32("missing")?, None);
        let t = g.tensor("t").context("tensor t")?;
        assert_eq!((t.shape(), t.size), (vec![2, 4], 32));
    }
    Ok(())
}

#[test]
fn truncated_files_are_clear_errors_at_every_cut() -> Result<()> {
    let bytes = std::fs::read(fixtures().join("tiny-a-f32.gguf"))?;
    let g = GgufFile::parse(&bytes, bytes.len() as u64, "x")?;
    let header = g.data_offset as usize;
    let cuts = (0..header)
        .step_by(7)
        .chain([header, header + 100, bytes.len() - 1]);
    for cut in cuts {
        let msg = open_err(bytes[..cut].to_vec(), "cut.gguf");
        assert!(msg.starts_with("cut.gguf"), "{msg}");
        assert!(
            msg.contains("truncated") || msg.contains("outside"),
            "cut at {cut}: {msg}"
        );
    }
    // A prefix of a longer file asks for more bytes.
    match GgufFile::parse(&bytes[..100], bytes.len() as u64, "big.gguf") {
        Err(Error::NeedMoreBytes {
            have: 100, need, ..
        }) => assert!(need > 100),
        other => panic!("expected NeedMoreBytes, got {other:?}"),
    }
    let g2 = GgufFile::parse(&bytes[..header], bytes.len() as u64, "big.gguf")?;
    assert_eq!(g2.tensors.len(), g.tensors.len());
    Ok(())
}

#[test]
fn bad_headers() -> Result<()> {
    let good = tiny_a_writer()?.to_bytes();
    let mut bad = good.clone();
    bad[..4].copy_from_slice(b"GGML");
    assert_has(
        &open_err(bad, "magic.gguf"),
        &["magic.gguf", "not a GGUF file"],
    );
    for (v, what) in [(1u32, "v1"), (7, "version 7")] {
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&v.to_le_bytes());
        assert_has(&open_err(bad, "ver.gguf"), &["ver.gguf", what]);
    }
    // Absurd counts fail before allocating.
    for (at, what) in [(8usize, "tensor infos"), (16, "metadata")] {
        let mut bad = good.clone();
        bad[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_has(
            &open_err(bad, "count.gguf"),
            &["count.gguf", what, "cannot fit"],
        );
    }
    let mut w = GgufWriter::new();
    w.set("x", GgufValue::String("s".into()));
    let mut bad = w.to_bytes();
    let len_at = 24 + 8 + 1 + 4; // header, key length, "x", type
    bad[len_at..len_at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert_has(
        &open_err(bad, "str.gguf"),
        &["str.gguf", "`x`", "cannot fit"],
    );
    let mut w = GgufWriter::new();
    w.set("general.alignment", GgufValue::U32(24));
    let msg = match GgufFile::parse(&w.to_bytes(), 64, "align.gguf") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("alignment 24 accepted"),
    };
    assert_has(&msg, &["align.gguf", "general.alignment"]);
    Ok(())
}

#[test]
fn unknown_architecture_and_missing_keys() -> Result<()> {
    let mut w = tiny_a_writer()?;
    w.set("general.architecture", GgufValue::String("llama".into()));
    let msg = open_err(w.to_bytes(), "arch.gguf");
    assert_has(&msg, &["architecture", "arch.gguf", "llama"]);

    for key in [
        "lfm2.shortconv.l_cache",
        "lfm2.embedding_length",
        "lfm2.attention.layer_norm_rms_epsilon",
    ] {
        let mut w = tiny_a_writer()?;
        w.remove(key);
        assert_has(
            &open_err(w.to_bytes(), "key.gguf"),
            &["key.gguf", key, "missing"],
        );
    }
    let mut w = tiny_a_writer()?;
    w.set("lfm2.block_count", GgufValue::String("six".into()));
    assert_has(
        &open_err(w.to_bytes(), "ty.gguf"),
        &["ty.gguf", "lfm2.block_count", "integer"],
    );
    Ok(())
}

#[test]
fn tensor_data_out_of_bounds_or_misaligned() -> Result<()> {
    let mut w = tiny_a_writer()?;
    w.tensor_mut("blk.3.ffn_up.weight")
        .context("tensor")?
        .offset_override = Some(1 << 40);
    assert_has(
        &open_err(w.to_bytes(), "oob.gguf"),
        &["oob.gguf", "blk.3.ffn_up.weight", "outside"],
    );
    let mut w = tiny_a_writer()?;
    w.tensor_mut("blk.0.ffn_norm.weight")
        .context("tensor")?
        .offset_override = Some(4);
    assert_has(
        &open_err(w.to_bytes(), "mis.gguf"),
        &["mis.gguf", "blk.0.ffn_norm.weight", "alignment"],
    );
    Ok(())
}

#[test]
fn shapes_dims_and_types_are_checked() -> Result<()> {
    // A tensor whose shape disagrees with the config.
    let mut w = tiny_a_writer()?;
    let t = w.tensor_mut("blk.2.attn_k.weight").context("tensor")?;
    t.ne = vec![64, 16];
    t.data.truncate(64 * 16 * 4);
    let err = ModelFile::from_gguf_bytes(w.to_bytes(), "shape.gguf").unwrap_err();
    match &err {
        Error::Shape {
            tensor,
            expected,
            got,
            ..
        } => {
            assert_eq!(tensor, "blk.2.attn_k.weight");
            assert_eq!(
                (expected.as_slice(), got.as_slice()),
                ([32, 64].as_slice(), [16, 64].as_slice())
            );
        }
        other => panic!("expected a shape error, got {other}"),
    }
    // The config disagrees with every FFN tensor.
    let mut w = tiny_a_writer()?;
    w.set("lfm2.feed_forward_length", GgufValue::U32(40));
    assert_has(
        &open_err(w.to_bytes(), "ff.gguf"),
        &["ff.gguf", "blk.0.ffn_gate.weight", "[40, 64]"],
    );
    // A missing tensor.
    let mut w = tiny_a_writer()?;
    w.tensors.retain(|t| t.name != "blk.4.attn_q_norm.weight");
    assert_has(
        &open_err(w.to_bytes(), "miss.gguf"),
        &["miss.gguf", "blk.4.attn_q_norm.weight", "missing"],
    );
    // Unsupported ggml type (q4_1).
    let mut w = tiny_a_writer()?;
    w.tensor_mut("blk.0.ffn_up.weight")
        .context("tensor")?
        .ggml_type = 3;
    assert_has(
        &open_err(w.to_bytes(), "q41.gguf"),
        &["unsupported", "q41.gguf", "blk.0.ffn_up.weight", "q4_1"],
    );
    // Absurd or malformed tensor dimensions.
    for (ne, what) in [
        (vec![1u64 << 40, 1 << 40], "absurd"),
        (vec![64, 0], "dimension 1 is 0"),
        (vec![1, 1, 1, 1, 1], "5 dimensions"),
    ] {
        let mut w = tiny_a_writer()?;
        w.tensor_mut("token_embd_norm.weight").context("tensor")?.ne = ne;
        assert_has(
            &open_err(w.to_bytes(), "dims.gguf"),
            &["dims.gguf", "token_embd_norm.weight", what],
        );
    }
    // Absurd hyper-parameters.
    for (key, value, field) in [
        ("lfm2.embedding_length", 1_000_000u32, "hidden_size"),
        ("lfm2.vocab_size", 50_000_000, "vocab_size"),
        ("lfm2.block_count", 5000, "lfm2.block_count"),
        ("lfm2.shortconv.l_cache", 0, "conv_kernel"),
    ] {
        let mut w = tiny_a_writer()?;
        w.set(key, GgufValue::U32(value));
        assert_has(&open_err(w.to_bytes(), "abs.gguf"), &["abs.gguf", field]);
    }
    let kv = |v: &[i32]| {
        GgufValue::Array(
            GgufType::I32,
            v.iter().map(|&x| GgufValue::I32(x)).collect(),
        )
    };
    let mut w = tiny_a_writer()?;
    w.set("lfm2.attention.head_count_kv", kv(&[0, 0, 3, 0, 3, 0]));
    assert_has(
        &open_err(w.to_bytes(), "kv.gguf"),
        &["kv.gguf", "num_kv_heads", "does not divide"],
    );
    let mut w = tiny_a_writer()?;
    w.set("lfm2.attention.head_count_kv", kv(&[0, 0, 2]));
    assert_has(
        &open_err(w.to_bytes(), "kvlen.gguf"),
        &["kvlen.gguf", "head_count_kv", "3 entries"],
    );
    Ok(())
}

#[test]
fn scalar_head_count_kv_takes_layer_kinds_from_tensors() -> Result<()> {
    let mut w = tiny_a_writer()?;
    w.set("lfm2.attention.head_count_kv", GgufValue::U32(2));
    let m = ModelFile::from_gguf_bytes(w.to_bytes(), "scalar.gguf")?;
    assert_eq!(m.config.layer_pattern(), "ccAcAc");
    Ok(())
}

/// Copies the tiny-a directory into a scratch directory, replacing some files.
fn tiny_a_copy(name: &str, replace: &[(&str, &[u8])]) -> Result<PathBuf> {
    let dir = scratch(name)?;
    for entry in std::fs::read_dir(fixtures().join("tiny-a"))? {
        let path = entry?.path();
        if let Some(file) = path.file_name() {
            std::fs::copy(&path, dir.join(file))?;
        }
    }
    for (file, bytes) in replace {
        std::fs::write(dir.join(file), bytes)?;
    }
    Ok(dir)
}

fn open_dir_err(dir: &Path) -> String {
    match ModelFile::open(dir) {
        Ok(_) => panic!("{}: expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// A safetensors file holding the given (name, dtype, shape, bytes).
fn safetensors_bytes(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, dtype, shape, data) in tensors {
        let info = serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]});
        header.insert(name.to_string(), info);
        offset += data.len();
    }
    let mut h = serde_json::to_vec(&header).unwrap_or_default();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    for (.., data) in tensors {
        out.extend(data);
    }
    out
}

#[test]
fn bad_hf_directories() -> Result<()> {
    let dir = tiny_a_copy("malformed", &[("config.json", b"{\"hidden_size\": 64,")])?;
    assert_has(&open_dir_err(&dir), &["config.json", "malformed JSON"]);

    let cfg = std::fs::read_to_string(fixtures().join("tiny-a/config.json"))?;
    let dir = tiny_a_copy(
        "badfield",
        &[(
            "config.json",
            cfg.replace("\"hidden_size\": 64", "\"hidden_size\": \"64\"")
                .as_bytes(),
        )],
    )?;
    assert_has(
        &open_dir_err(&dir),
        &["config.json", "hidden_size", "integer"],
    );

    let dir = tiny_a_copy(
        "absurd",
        &[(
            "config.json",
            cfg.replace("\"vocab_size\": 360", "\"vocab_size\": 90000000")
                .as_bytes(),
        )],
    )?;
    assert_has(&open_dir_err(&dir), &["config.json", "vocab_size"]);

    let dir = tiny_a_copy(
        "arch",
        &[(
            "config.json",
            cfg.replace("\"model_type\": \"lfm2\"", "\"model_type\": \"llama\"")
                .as_bytes(),
        )],
    )?;
    assert_has(&open_dir_err(&dir), &["architecture", "llama"]);

    let dir = tiny_a_copy(
        "shape",
        &[(
            "config.json",
            cfg.replace("\"intermediate_size\": 48", "\"intermediate_size\": 64")
                .as_bytes(),
        )],
    )?;
    assert_has(
        &open_dir_err(&dir),
        &["ffn_gate.weight", "expected shape [64, 64]"],
    );

    let st = safetensors_bytes(&[(
        "model.embed_tokens.weight",
        "I32",
        vec![360, 64],
        vec![0; 360 * 64 * 4],
    )]);
    let dir = tiny_a_copy("dtype", &[("model.safetensors", &st)])?;
    assert_has(
        &open_dir_err(&dir),
        &[
            "unsupported",
            "model.safetensors",
            "model.embed_tokens.weight",
            "I32",
        ],
    );

    let st = std::fs::read(fixtures().join("tiny-a/model.safetensors"))?;
    let dir = tiny_a_copy("trunc", &[("model.safetensors", &st[..st.len() - 10])])?;
    assert_has(
        &open_dir_err(&dir),
        &["model.safetensors", "invalid safetensors"],
    );

    let dir = tiny_a_copy("tok", &[("tokenizer.json", b"{\"model\": 3}")])?;
    let m = ModelFile::open(&dir)?;
    let msg = m.tokenizer().unwrap_err().to_string();
    assert_has(&msg, &["tokenizer", "tokenizer.json"]);

    let dir = scratch("empty")?;
    assert_has(&open_dir_err(&dir), &["config.json"]);
    std::fs::write(dir.join("config.json"), &cfg)?;
    assert_has(&open_dir_err(&dir), &["no *.safetensors"]);
    std::fs::write(dir.join("notes.txt"), "x")?;
    let msg = ModelFile::open(&dir.join("notes.txt"))
        .unwrap_err()
        .to_string();
    assert_has(&msg, &["notes.txt", "not a model"]);
    Ok(())
}
