//! The control under test: the release `control` binary in a process of
//! its own (so its CPU time and memory are its own), on a fresh SQLite
//! data directory or a fresh PostgreSQL database that is dropped after the
//! run; or an already running control named by URL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;

use crate::procstat;
use crate::signal::http;

/// Which database a started control uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    pub fn name(self) -> &'static str {
        match self {
            Database::Sqlite => "sqlite",
            Database::Postgres => "postgres",
        }
    }
}

/// The system admin the bench creates before control serves.
pub const ADMIN: &str = "benchadmin";
/// Meets control's default password policy; only ever on a throw-away
/// database.
pub const ADMIN_PASSWORD: &str = "Bench-Admin-Pass-42";

/// Where PostgreSQL is when `ENCLAVE_BENCH_PG` does not say.
const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Finds the control binary: `$CONTROL_BIN`, else next to this executable
/// (or its parent, for test executables in `deps/`).
pub fn find_control_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CONTROL_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("control"), dir.parent()?.join("control")]
        .into_iter()
        .find(|p| p.is_file())
}

/// Raises this process's open-file limit to its hard limit (children
/// inherit it): ten thousand sockets need ten thousand descriptors on each
/// side. Returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 0;
        }
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        l.rlim_cur
    }
}

pub struct Control {
    pub addr: SocketAddr,
    /// The process, when the bench started it.
    pub pid: Option<u32>,
    pub description: String,
    child: Option<std::process::Child>,
    data_dir: Option<tempfile::TempDir>,
    pg_database: Option<(String, String)>,
}

pub struct StartOptions {
    pub binary: PathBuf,
    pub database: Database,
    pub cpus: Option<Vec<usize>>,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn pg_admin_url() -> String {
    std::env::var("ENCLAVE_BENCH_PG").unwrap_or_else(|_| DEFAULT_PG.into())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let root = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    format!("{root}/{name}{query}")
}

async fn pg_exec(admin: &str, sql: String) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .with_context(|| format!("PostgreSQL at {admin} (set ENCLAVE_BENCH_PG)"))?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

impl Control {
    /// An already running control: the bench creates its users there, and
    /// reports no CPU or memory for it.
    pub fn external(url: &str) -> anyhow::Result<Control> {
        let hostport = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&hostport)?
            .next()
            .context("--control-url names no address")?;
        Ok(Control {
            addr,
            pid: None,
            description: format!("external {url}"),
            child: None,
            data_dir: None,
            pg_database: None,
        })
    }

    pub async fn start(o: &StartOptions) -> anyhow::Result<Control> {
        let data_dir = tempfile::Builder::new().prefix("bench-chat-").tempdir()?;
        let (url, pg_database) = match o.database {
            Database::Sqlite => (String::new(), None),
            Database::Postgres => {
                let admin = pg_admin_url();
                let name = format!("bench_chat_{}", std::process::id());
                pg_exec(&admin, format!("DROP DATABASE IF EXISTS \"{name}\"")).await?;
                pg_exec(&admin, format!("CREATE DATABASE \"{name}\"")).await?;
                (with_database(&admin, &name), Some((admin, name)))
            }
        };
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut control = Control {
            addr,
            pid: None,
            description: format!("process {} on {}", o.binary.display(), o.database.name()),
            child: None,
            data_dir: Some(data_dir),
            pg_database,
        };
        let dir = control.data_dir.as_ref().map(|d| d.path().to_path_buf());
        let dir = dir.unwrap_or_default();
        let command = |args: &[&str]| -> std::process::Command {
            let mut cmd = std::process::Command::new(&o.binary);
            for (k, _) in std::env::vars() {
                if k.starts_with("ENCLAVE_") {
                    cmd.env_remove(k);
                }
            }
            cmd.args(args)
                .env("ENCLAVE_SERVER__LISTEN", addr.to_string())
                .env("ENCLAVE_SERVER__DATA_DIR", &dir)
                .env("ENCLAVE_SERVER__DRAIN_SECS", "1")
                .env("ENCLAVE_DATABASE__URL", &url)
                // Every set-up login comes from one address.
                .env("ENCLAVE_AUTH__LOGIN_RATE_PER_MINUTE", "100000000")
                .env("ENCLAVE_AUTH__COOKIE_SECURE", "false")
                .env("ENCLAVE_LOG__FILTER", "warn")
                .env("ENCLAVE_LOG__AUDIT_FILE", dir.join("audit.log"))
                // Chat only: each node's embedded media node stays on
                // loopback, on a port of its own, with one thread.
                .env("ENCLAVE_RTCD__MEDIA__PORT", "0")
                .env("ENCLAVE_RTCD__MEDIA__BIND_IP", "127.0.0.1")
                .env("ENCLAVE_RTCD__MEDIA__ALLOW_LOOPBACK", "true")
                .env("ENCLAVE_RTCD__MEDIA__WORKERS", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            cmd
        };
        // The admin exists before control serves, so no first-run password
        // has to be fished out of its output.
        let mut create = command(&[
            "create-user",
            "--username",
            ADMIN,
            "--role",
            "admin",
            "--password-stdin",
        ])
        .spawn()
        .with_context(|| format!("starting {}", o.binary.display()))?;
        if let Some(mut stdin) = create.stdin.take() {
            use std::io::Write as _;
            writeln!(stdin, "{ADMIN_PASSWORD}")?;
        }
        let status = create.wait()?;
        anyhow::ensure!(status.success(), "control create-user failed: {status}");

        let mut cmd = command(&["serve"]);
        cmd.stdin(Stdio::null());
        if let Some(cpus) = o.cpus.clone() {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: the closure only makes the sched_setaffinity
            // syscall, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || procstat::pin_current(&cpus));
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", o.binary.display()))?;
        control.pid = Some(child.id());
        let ready = wait_ready(addr, &mut child).await;
        control.child = Some(child);
        ready?;
        Ok(control)
    }

    pub fn cpu(&self) -> Option<Duration> {
        procstat::process_cpu(self.pid?)
    }

    pub fn rss(&self) -> Option<u64> {
        procstat::rss_bytes(self.pid?)
    }

    /// Stops the process and removes its database.
    pub async fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            for _ in 0..100 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some((admin, name)) = self.pg_database.take()
            && let Err(e) = pg_exec(&admin, format!("DROP DATABASE IF EXISTS \"{name}\"")).await
        {
            eprintln!("bench: could not drop the database {name}: {e:#}");
        }
    }
}

impl Drop for Control {
    /// A run that failed half way must not leave control behind.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn wait_ready(addr: SocketAddr, child: &mut std::process::Child) -> anyhow::Result<()> {
    for _ in 0..400 {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("control exited at start: {status}");
        }
        if let Ok(r) = http(addr, "GET", "/readyz", &[], b"").await
            && r.status == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("control did not become ready on {addr}")
}

/// CPU time of every PostgreSQL server process (they are not control's,
/// but the database works for control).
pub fn postgres_cpu() -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == "postgres")
        })
        .filter_map(procstat::process_cpu)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "b1"),
            "postgres://u@h:5432/b1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "b1"), "postgres://u@h/b1");
    }
}
