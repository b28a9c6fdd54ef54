//! Every kernel variant preprocesses and validates with naga alone (no GPU needed), and the
//! preprocessor rejects unknown names instead of silently taking the other branch.

use lfm::gpu::shader::{self, Defines};
use lfm::ops;

#[test]
fn every_variant_validates_with_naga() {
    let variants = ops::all_variants();
    assert!(
        variants.len() > 20,
        "expected every variant, got {}",
        variants.len()
    );
    for spec in variants {
        let src = spec
            .source()
            .unwrap_or_else(|e| panic!("{}: {e}", spec.label()));
        shader::validate(&spec.label(), &src).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn unknown_flag_is_an_error() {
    // gemv.wgsl tests PLAIN/RESIDUAL/SWIGLU/SHORTCONV; leaving them undeclared must fail.
    let err = shader::preprocess("gemv.wgsl", &Defines::default().var("FMT", "f32"))
        .expect_err("undeclared flag accepted");
    assert!(err.to_string().contains("not declared"), "{err}");
}

#[test]
fn unknown_include_is_an_error() {
    let d = Defines::default()
        .flag("PLAIN", true)
        .flag("RESIDUAL", false)
        .flag("SWIGLU", false)
        .flag("SHORTCONV", false)
        .flag("XCACHE", false)
        .var("FMT", "q9_9");
    let err = shader::preprocess("gemv.wgsl", &d).expect_err("bad include accepted");
    assert!(err.to_string().contains("formats/q9_9.wgsl"), "{err}");
}
