//! Converted models kept by the digest of what they were made from.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ModelError, convert_ct2_to_ggml, vocab};

/// Bumped whenever the converter's output changes, so old files are not reused.
const CONVERTER_VERSION: &[u8] = b"enclave ct2->ggml 1\0";

/// The ggml model for the CTranslate2 model in `ct2_dir`, converting it into
/// `cache_dir` the first time.
///
/// The file is named by the SHA-256 of the converter version, `model.bin`
/// and the vocabulary, so a changed model is converted again and the same
/// model is never converted twice. Concurrent callers may both convert; the
/// rename makes the last one win with identical bytes.
pub fn ensure_ggml(ct2_dir: &Path, cache_dir: &Path) -> Result<PathBuf, ModelError> {
    let model = ct2_dir.join("model.bin");
    let vocab = vocab::find(ct2_dir)?;
    let mut h = Sha256::new();
    h.update(CONVERTER_VERSION);
    hash_file(&mut h, &model)?;
    h.update(
        vocab
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default(),
    );
    hash_file(&mut h, &vocab)?;
    let digest = hex::encode(h.finalize());
    let out = cache_dir.join(format!("ggml-{}.bin", &digest[..16]));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| ModelError::io(cache_dir, e))?;
    convert_ct2_to_ggml(ct2_dir, &out)?;
    Ok(out)
}

fn hash_file(h: &mut Sha256, path: &Path) -> Result<(), ModelError> {
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}
