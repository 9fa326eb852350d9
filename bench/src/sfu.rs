//! The rtcd under test: a separate process (the `rtcd` binary, so its CPU
//! time is its own), or in this process when no binary is at hand (the
//! quick test; CPU figures then come from rtcd's threads only and memory
//! per participant is not measured).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;

use crate::janus::server::{JanusOptions, JanusServer};
use crate::procstat;
use crate::signal::http;

/// Where rtcd runs, or Janus in its place (`bench compare`).
#[derive(Debug, Clone)]
pub enum SfuMode {
    Binary(PathBuf),
    InProcess,
    Janus(JanusOptions),
}

impl SfuMode {
    /// The SFU's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            SfuMode::Janus(_) => "janus",
            _ => "rtcd",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SfuOptions {
    pub mode: SfuMode,
    pub workers: usize,
    pub batching: bool,
    /// CPUs to pin the rtcd process to (binary mode only).
    pub cpus: Option<Vec<usize>>,
}

/// Finds the rtcd binary: `$RTCD_BIN`, else next to this executable (or
/// its parent, for test executables in `deps/`).
pub fn find_rtcd_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RTCD_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("rtcd"), dir.parent()?.join("rtcd")]
        .into_iter()
        .find(|p| p.is_file())
}

enum Running {
    Child(std::process::Child),
    InProcess {
        rtcd: Box<rtcd::Rtcd>,
        runtime: tokio::runtime::Runtime,
    },
    Janus(JanusServer),
}

pub struct Sfu {
    pub api: SocketAddr,
    pub key: String,
    pub token_secret: String,
    pub pid: u32,
    pub in_process: bool,
    /// Janus: no control API, no /metrics.
    pub janus: bool,
    running: Option<Running>,
}

/// Counters from rtcd's `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub values: HashMap<String, f64>,
}

impl Metrics {
    pub fn get(&self, key: &str) -> f64 {
        self.values.get(key).copied().unwrap_or(0.0)
    }

    /// Sum of every series of a metric.
    pub fn sum(&self, name: &str) -> f64 {
        self.values
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// Sum of the series of `name` whose labels contain `label`.
    pub fn sum_where(&self, name: &str, label: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.values
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && k.contains(label))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn forwarded_packets(&self) -> f64 {
        self.sum("rtcd_forwarded_packets_total")
    }

    pub fn forwarded_bytes(&self) -> f64 {
        self.sum("rtcd_forwarded_bytes_total")
    }

    pub fn worker_cpu(&self) -> f64 {
        self.sum("rtcd_worker_cpu_seconds")
    }

    /// Series of `name` by their label text, e.g. `reason="muted"`.
    pub fn series(&self, name: &str) -> Vec<(String, f64)> {
        let prefix = format!("{name}{{");
        let mut v: Vec<(String, f64)> = self
            .values
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(&prefix)
                    .map(|l| (l.trim_end_matches('}').to_string(), *v))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn parse(text: &str) -> Metrics {
        let values = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        Metrics { values }
    }
}

fn random_secret() -> String {
    let mut b = [0u8; 24];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Sfu {
    pub async fn start(opts: &SfuOptions) -> anyhow::Result<Sfu> {
        let key = random_secret();
        let token_secret = random_secret();
        match &opts.mode {
            SfuMode::Binary(path) => Self::start_binary(path, opts, key, token_secret).await,
            SfuMode::InProcess => Self::start_in_process(opts, key, token_secret).await,
            SfuMode::Janus(j) => {
                let server = JanusServer::start(j, opts.cpus.clone())
                    .await
                    .context("starting Janus")?;
                Ok(Sfu {
                    api: server.api,
                    key,
                    token_secret,
                    pid: server.pid,
                    in_process: false,
                    janus: true,
                    running: Some(Running::Janus(server)),
                })
            }
        }
    }

    async fn start_binary(
        path: &Path,
        opts: &SfuOptions,
        key: String,
        token_secret: String,
    ) -> anyhow::Result<Sfu> {
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let api = SocketAddr::from(([127, 0, 0, 1], port));
            let mut cmd = std::process::Command::new(path);
            for (k, _) in std::env::vars() {
                if k.starts_with("RTCD_") {
                    cmd.env_remove(k);
                }
            }
            cmd.env("RTCD_API__LISTEN", api.to_string())
                .env("RTCD_API__KEYS", format!("[\"{key}\"]"))
                .env("RTCD_API__TOKEN_SECRET", &token_secret)
                .env("RTCD_NODE_ID", "rtcd-bench")
                .env("RTCD_RTC__BIND_IP", "127.0.0.1")
                .env("RTCD_RTC__PORT", "0")
                .env("RTCD_RTC__ALLOW_LOOPBACK", "true")
                .env("RTCD_RTC__ICE_TCP", "false")
                .env("RTCD_RTC__WORKERS", opts.workers.to_string())
                .env("RTCD_RTC__BATCHING", opts.batching.to_string())
                .env("RTCD_RTC__CONNECT_TIMEOUT_SECS", "60")
                // `BENCH_RTCD_LOG` (a tracing filter) diagnoses a run, e.g.
                // `is=debug,str0m=debug` for ICE and DTLS of every session.
                .env(
                    "RTCD_LOG__FILTER",
                    std::env::var("BENCH_RTCD_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .env("RTCD_DRAIN__DEADLINE_SECS", "1")
                .stdin(Stdio::null())
                // rtcd logs to stdout: keep it when a log filter was asked for.
                .stdout(if std::env::var_os("BENCH_RTCD_LOG").is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                })
                .stderr(Stdio::inherit());
            if let Some(cpus) = opts.cpus.clone() {
                use std::os::unix::process::CommandExt as _;
                // SAFETY: the closure only makes the sched_setaffinity
                // syscall, which is async-signal-safe.
                unsafe {
                    cmd.pre_exec(move || procstat::pin_current(&cpus));
                }
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting {}", path.display()))?;
            let pid = child.id();
            let mut sfu = Sfu {
                api,
                key: key.clone(),
                token_secret: token_secret.clone(),
                pid,
                in_process: false,
                janus: false,
                running: None,
            };
            match sfu.wait_ready(&mut child).await {
                Ok(()) => {
                    sfu.running = Some(Running::Child(child));
                    return Ok(sfu);
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("rtcd did not start")))
    }

    async fn wait_ready(&self, child: &mut std::process::Child) -> anyhow::Result<()> {
        for _ in 0..100 {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("rtcd exited at start: {status}");
            }
            if let Ok(r) = http(self.api, "GET", "/readyz", &[], b"").await
                && r.status == 200
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("rtcd did not become ready on {}", self.api)
    }

    async fn start_in_process(
        opts: &SfuOptions,
        key: String,
        token_secret: String,
    ) -> anyhow::Result<Sfu> {
        let mut config = rtcd::Config {
            node_id: "rtcd-bench".into(),
            ..Default::default()
        };
        config.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.api.keys = vec![key.clone()];
        config.api.token_secret = token_secret.clone();
        config.rtc.bind_ip = [127, 0, 0, 1].into();
        config.rtc.port = 0;
        config.rtc.allow_loopback = true;
        config.rtc.ice_tcp = false;
        config.rtc.workers = opts.workers;
        config.rtc.batching = opts.batching;
        config.rtc.connect_timeout_secs = 60;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("rtcd config: {}", e.join("; ")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("rtcd-io")
            .build()?;
        let rtcd = runtime.spawn(rtcd::Rtcd::start(config)).await??;
        Ok(Sfu {
            api: rtcd.api_addr,
            key,
            token_secret,
            pid: procstat::self_pid(),
            in_process: true,
            janus: false,
            running: Some(Running::InProcess {
                rtcd: Box::new(rtcd),
                runtime,
            }),
        })
    }

    /// CPU time rtcd has used: the whole process, or its threads when in
    /// process.
    pub fn cpu(&self) -> Option<Duration> {
        if self.in_process {
            let tids = procstat::threads_named(self.pid, "rtcd-");
            Some(
                tids.iter()
                    .filter_map(|t| procstat::thread_cpu(self.pid, *t))
                    .sum(),
            )
        } else {
            procstat::process_cpu(self.pid)
        }
    }

    pub fn rss(&self) -> Option<u64> {
        if self.in_process {
            None
        } else {
            procstat::rss_bytes(self.pid)
        }
    }

    /// rtcd's counters; Janus has none to offer (empty).
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        if self.janus {
            return Ok(Metrics::default());
        }
        let r = http(self.api, "GET", "/metrics", &[], b"").await?;
        anyhow::ensure!(r.status == 200, "/metrics: HTTP {}", r.status);
        Ok(Metrics::parse(&r.text()))
    }

    pub async fn stop(mut self) {
        match self.running.take() {
            Some(Running::Child(mut c)) => {
                // SIGTERM, then a short drain; kill if it lingers.
                // SAFETY: signalling our own child by pid.
                unsafe {
                    libc::kill(self.pid as i32, libc::SIGTERM);
                }
                for _ in 0..100 {
                    if matches!(c.try_wait(), Ok(Some(_))) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            Some(Running::InProcess { rtcd, runtime }) => {
                let _ = runtime.spawn(async move { rtcd.stop().await }).await;
                runtime.shutdown_background();
            }
            Some(Running::Janus(j)) => j.stop().await,
            None => {}
        }
    }
}

impl Sfu {
    /// Errors Janus logged during the run (none for rtcd).
    pub fn janus_errors(&self) -> Vec<String> {
        match &self.running {
            Some(Running::Janus(j)) => j.log_errors(),
            _ => Vec::new(),
        }
    }
}

impl Drop for Sfu {
    /// A run that failed half way must not leave rtcd behind.
    fn drop(&mut self) {
        if let Some(Running::Child(mut c)) = self.running.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_parses() {
        let m = Metrics::parse(
            "# HELP x\nrtcd_forwarded_packets_total{kind=\"audio\"} 10\nrtcd_forwarded_packets_total{kind=\"video\"} 5\nrtcd_sessions 3\n",
        );
        assert_eq!(m.forwarded_packets(), 15.0);
        assert_eq!(m.get("rtcd_sessions"), 3.0);
        assert_eq!(m.series("rtcd_forwarded_packets_total").len(), 2);
    }
}
