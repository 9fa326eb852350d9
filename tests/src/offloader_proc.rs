//! The offloader as a separate process, from the built binary, on
//! loopback: for tests that record a call through it, and kill it
//! (`SIGKILL`) mid-recording to see the job resume.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// A running `offloader serve`, killed when dropped.
pub struct OffloaderProcess {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    api_key: String,
    model: Option<PathBuf>,
}

impl OffloaderProcess {
    /// Serves jobs from `data_dir` on a free loopback port with `api_key`;
    /// `model` (a ggml file or a CTranslate2 directory) for transcripts.
    /// Returns once `/healthz` answers.
    pub fn start(data_dir: &Path, api_key: &str, model: Option<&Path>) -> Result<Self> {
        let port = crate::ports::free_tcp_port()?;
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], port)),
            data_dir,
            api_key,
            model,
        )
    }

    fn start_on(
        addr: SocketAddr,
        data_dir: &Path,
        api_key: &str,
        model: Option<&Path>,
    ) -> Result<Self> {
        let bin = crate::rtcd_proc::workspace_binary("offloader", "OFFLOADER_BIN", "offloader")?;
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("ENCLAVE_JOBS__") || k.starts_with("ENCLAVE_WORK__") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("ENCLAVE_JOBS__LISTEN", addr.to_string())
            .env("ENCLAVE_JOBS__DATA_DIR", data_dir)
            .env("ENCLAVE_JOBS__API_KEY", api_key)
            .env("ENCLAVE_JOBS__RETRY_BASE_MS", "200")
            .env("ENCLAVE_WORK__MEDIA_IP", "127.0.0.1")
            // `ENCLAVE_TEST_OFFLOADER_LOG=offloader=debug` shows its jobs.
            .env(
                "RUST_LOG",
                std::env::var("ENCLAVE_TEST_OFFLOADER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(m) = model {
            cmd.env("ENCLAVE_WORK__MODEL", m);
        }
        let child = cmd.spawn().context("starting the offloader")?;
        let mut p = OffloaderProcess {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            api_key: api_key.to_owned(),
            model: model.map(Path::to_path_buf),
        };
        let healthz = format!("http://{addr}/healthz");
        if let Err(e) = crate::wait::wait_for_http(&healthz, Duration::from_secs(60)) {
            p.kill();
            return Err(e.context("the offloader did not come up"));
        }
        Ok(p)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no chance to save anything it had not written.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new process on the same address and data dir (after [`kill`]).
    ///
    /// [`kill`]: Self::kill
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let next = Self::start_on(
            self.addr,
            &self.data_dir.clone(),
            &self.api_key.clone(),
            self.model.clone().as_deref(),
        )?;
        *self = next;
        Ok(())
    }
}

impl Drop for OffloaderProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
