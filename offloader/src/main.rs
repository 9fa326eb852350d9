//! `offloader`: Enclave's recording and transcription job service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Enclave's recording, transcription and live-caption job service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a CTranslate2 (faster-whisper) Whisper model directory to a
    /// whisper.cpp ggml model file.
    ConvertModel {
        /// Directory with model.bin and vocabulary.txt (or .json).
        ct2_dir: PathBuf,
        /// The ggml file to write (replaced atomically).
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::ConvertModel { ct2_dir, out } => offloader::model::cli::convert(&ct2_dir, &out),
    }
}
