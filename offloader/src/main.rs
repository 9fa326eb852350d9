//! `offloader`: Enclave's recording and transcription job service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use offloader::service::{self, ServiceConfig};
use offloader::work::{self, WorkConfig};

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
    /// Serve the job API with in-process workers until SIGTERM or Ctrl-C.
    Serve {
        /// TOML file with `[jobs]` and `[work]` (ENCLAVE_JOBS__*,
        /// ENCLAVE_WORK__* override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run one job to its end in this process (a Kubernetes Job's pod). A
    /// data dir that already holds the job carries on with it.
    RunJob {
        /// The job spec (JSON, as POST /v1/jobs takes it).
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
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
        Command::Serve { config } => run(|| serve(config.as_deref())),
        Command::RunJob {
            spec,
            data_dir,
            config,
        } => run(|| run_job(&spec, &data_dir, config.as_deref())),
    }
}

fn run<F: Future<Output = Result<(), String>>>(f: impl FnOnce() -> F) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("offloader: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("offloader: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runner(work: &WorkConfig, data_dir: &Path) -> Result<Arc<work::CallWork>, String> {
    let model = work.ggml_model(data_dir)?;
    Ok(work::runner(work.media_ip, model, work.threads))
}

async fn serve(config: Option<&Path>) -> Result<(), String> {
    let jobs = ServiceConfig::load(config).map_err(|e| e.join("; "))?;
    let work = WorkConfig::load(config)?;
    let runner = runner(&work, &jobs.data_dir)?;
    let handle = service::serve(jobs, runner)
        .await
        .map_err(|e| e.to_string())?;
    // Tests and operators read where it listens from this line.
    println!("offloader listening on {}", handle.local_addr());
    shutdown_signal().await;
    tracing::info!("shutting down: running jobs resume on the next start");
    handle.shutdown().await;
    Ok(())
}

async fn run_job(spec: &Path, data_dir: &Path, config: Option<&Path>) -> Result<(), String> {
    let text = std::fs::read_to_string(spec).map_err(|e| format!("{}: {e}", spec.display()))?;
    let spec = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a job spec: {e}", spec.display()))?;
    let work = WorkConfig::load(config)?;
    let runner = runner(&work, data_dir)?;
    let info = service::run_one(spec, data_dir, runner)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string(&info).unwrap_or_default());
    match info.error {
        None => Ok(()),
        Some(e) => Err(format!(
            "job {} ended {:?}: {}: {}",
            info.id, info.state, e.code, e.message
        )),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
