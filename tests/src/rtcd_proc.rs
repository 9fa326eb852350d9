//! rtcd as a separate process, from the built binary, on loopback: for
//! tests that kill (`SIGKILL`) or drain (`SIGTERM`) a media node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The `rtcd` binary: `RTCD_BIN`, or next to the running test's own
/// executable (`target/<profile>/rtcd`). `cargo build -p rtcd` makes it.
pub fn rtcd_binary() -> Result<PathBuf> {
    workspace_binary("rtcd", "RTCD_BIN", "rtcd")
}

/// A binary of the workspace: `$env`, or next to the running test's own
/// executable (`target/<profile>/<name>`), which `cargo test --workspace`
/// builds; `cargo build -p <package>` makes it otherwise.
pub fn workspace_binary(name: &str, env: &str, package: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            bail!("{env}={} is not a file", p.display())
        };
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the test executable's folder")?;
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!("no {name} binary next to the tests: run `cargo build -p {package}` first or set {env}")
        })
}

/// A running rtcd process, killed when dropped.
pub struct RtcdProcess {
    child: Child,
    pub api: SocketAddr,
}

impl RtcdProcess {
    /// Starts a loopback node whose control API takes `api_key`; running
    /// calls get `drain_secs` after SIGTERM. Returns once `/healthz` answers.
    pub fn start(name: &str, api_key: &str, drain_secs: u64) -> Result<RtcdProcess> {
        let port = crate::ports::free_tcp_port()?;
        Self::start_at(
            name,
            api_key,
            drain_secs,
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    /// As [`RtcdProcess::start`], with the control API on `api`: a node
    /// started again where one ran before (a restart after a crash).
    pub fn start_at(
        name: &str,
        api_key: &str,
        drain_secs: u64,
        api: SocketAddr,
    ) -> Result<RtcdProcess> {
        let mut cmd = Command::new(rtcd_binary()?);
        for (k, _) in std::env::vars() {
            if k.starts_with("RTCD_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("run")
            .env("RTCD_NODE_ID", name)
            .env("RTCD_RTC__BIND_IP", "127.0.0.1")
            .env("RTCD_RTC__PORT", "0")
            .env("RTCD_RTC__ALLOW_LOOPBACK", "true")
            .env("RTCD_RTC__WORKERS", "1")
            .env("RTCD_API__LISTEN", api.to_string())
            .env("RTCD_API__KEYS", format!("[\"{api_key}\"]"))
            .env("RTCD_DRAIN__DEADLINE_SECS", drain_secs.to_string())
            // `ENCLAVE_TEST_RTCD_LOG=rtcd=debug` shows a node's sessions when a
            // test needs explaining; its log goes to the test's output.
            .env(
                "RTCD_LOG__FILTER",
                std::env::var("ENCLAVE_TEST_RTCD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting rtcd")?;
        let mut p = RtcdProcess { child, api };
        let healthz = format!("http://{api}/healthz");
        if let Err(e) = crate::wait::wait_for_http(&healthz, Duration::from_secs(20)) {
            let _ = p.child.kill();
            return Err(e.context(format!("rtcd {name} did not come up")));
        }
        Ok(p)
    }

    /// The node's key in control's pool.
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the node vanishes without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the node drains.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for RtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
