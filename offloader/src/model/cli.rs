//! The `offloader convert-model` subcommand.

use std::path::Path;
use std::process::ExitCode;

/// Converts, prints what was written, and maps failure to exit status 1.
pub fn convert(ct2_dir: &Path, out: &Path) -> ExitCode {
    match super::convert_ct2_to_ggml(ct2_dir, out) {
        Ok(r) => {
            println!(
                "wrote {}: {} bytes, vocab {}, width {}, layers {}/{}, mels {}, {} tensors, {} tokens",
                out.display(),
                r.bytes,
                r.n_vocab,
                r.n_state,
                r.n_audio_layer,
                r.n_text_layer,
                r.n_mels,
                r.tensors,
                r.base_tokens
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("offloader convert-model: {e}");
            ExitCode::FAILURE
        }
    }
}
