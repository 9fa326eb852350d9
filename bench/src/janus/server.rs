//! The Janus under test: Debian's `janus` package, installed if missing,
//! run as its own process with a configuration written for the run.
//!
//! The configuration loads the VideoRoom plugin and the HTTP transport
//! only (its plugin and transport folders hold links to just those two),
//! gathers ICE candidates on the namespace's veth end alone
//! (`ice_enforce_list`, see [`crate::netns`]), uses no STUN server, and
//! logs warnings and errors to a file, so logging costs Janus nothing
//! during a run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::netns::JANUS_IFACE;
use crate::procstat;
use crate::signal::http;

const PLUGIN: &str = "libjanus_videoroom.so";
const TRANSPORT: &str = "libjanus_http.so";

/// How Janus is run.
#[derive(Debug, Clone)]
pub struct JanusOptions {
    pub binary: PathBuf,
    /// Janus's own library folder (`plugins/`, `transports/` below it).
    pub lib_dir: PathBuf,
    /// Shared media event loops; 0 is Janus's default, a thread per handle.
    pub event_loops: usize,
}

fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("janus"))
        .chain([PathBuf::from("/usr/bin/janus")])
        .find(|p| p.is_file())
}

fn find_lib_dir() -> Option<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/lib/janus"),
        PathBuf::from("/opt/janus/lib/janus"),
    ];
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        dirs.extend(rd.flatten().map(|e| e.path().join("janus")));
    }
    dirs.into_iter()
        .find(|d| d.join("plugins").join(PLUGIN).is_file())
}

/// Finds Janus, installing Debian's package first when it is missing.
/// Runs before the network namespace is entered (apt needs the host's).
pub fn find_or_install() -> anyhow::Result<JanusOptions> {
    if find_binary().is_none() || find_lib_dir().is_none() {
        eprintln!("bench: Janus is not installed; running apt-get install -y janus");
        let status = Command::new("apt-get")
            .args([
                "-o",
                "DPkg::Lock::Timeout=300",
                "install",
                "-y",
                "-q",
                "janus",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("running apt-get")?;
        anyhow::ensure!(status.success(), "apt-get install janus failed: {status}");
    }
    Ok(JanusOptions {
        binary: find_binary().context("no janus binary after installing it")?,
        lib_dir: find_lib_dir().context("no Janus VideoRoom plugin after installing janus")?,
        event_loops: 0,
    })
}

/// The configuration folder for one run, removed when dropped.
struct ConfigDir(PathBuf);

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_config(dir: &Path, o: &JanusOptions, port: u16) -> anyhow::Result<()> {
    for sub in ["plugins", "transports", "events", "loggers"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::os::unix::fs::symlink(
        o.lib_dir.join("plugins").join(PLUGIN),
        dir.join("plugins").join(PLUGIN),
    )?;
    std::os::unix::fs::symlink(
        o.lib_dir.join("transports").join(TRANSPORT),
        dir.join("transports").join(TRANSPORT),
    )?;
    let d = dir.display();
    let main = format!(
        r#"general: {{
	configs_folder = "{d}"
	plugins_folder = "{d}/plugins"
	transports_folder = "{d}/transports"
	events_folder = "{d}/events"
	loggers_folder = "{d}/loggers"
	debug_level = 3
	session_timeout = 60
{loops}	server_name = "bench"
}}
certificates: {{
}}
media: {{
	rtp_port_range = "20000-40000"
	no_media_timer = 5
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = "{JANUS_IFACE}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
	broadcast = false
}}
"#,
        loops = if o.event_loops > 0 {
            format!("\tevent_loops = {}\n", o.event_loops)
        } else {
            String::new()
        }
    );
    let transport = format!(
        r#"general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = {port}
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"#
    );
    std::fs::write(dir.join("janus.jcfg"), main)?;
    std::fs::write(dir.join("janus.transport.http.jcfg"), transport)?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    Ok(())
}

/// A running Janus.
pub struct JanusServer {
    pub api: SocketAddr,
    pub pid: u32,
    child: Option<Child>,
    dir: ConfigDir,
}

impl JanusServer {
    /// Writes the configuration, starts Janus (pinned to `cpus`) and waits
    /// until its HTTP API answers.
    pub async fn start(o: &JanusOptions, cpus: Option<Vec<usize>>) -> anyhow::Result<JanusServer> {
        let port = crate::sfu::free_port()?;
        let dir = ConfigDir(
            std::env::temp_dir().join(format!("bench-janus-{}-{port}", procstat::self_pid())),
        );
        let _ = std::fs::remove_dir_all(&dir.0);
        write_config(&dir.0, o, port).context("writing Janus's configuration")?;
        let mut cmd = Command::new(&o.binary);
        cmd.arg("-C")
            .arg(dir.0.join("janus.jcfg"))
            .arg("-F")
            .arg(&dir.0)
            .arg("-L")
            .arg(dir.0.join("janus.log"))
            .args(["-N", "-o"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: only async-signal-safe syscalls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Janus dies with the bench, even on SIGKILL.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    // Its own process group: Ctrl-C reaches the bench, which
                    // stops Janus in order.
                    libc::setpgid(0, 0);
                    // A handle holds sockets; hundreds of them need more
                    // descriptors than the usual soft limit.
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                        lim.rlim_cur = lim.rlim_max;
                        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                    }
                    match &cpus {
                        Some(c) => procstat::pin_current(c),
                        None => Ok(()),
                    }
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", o.binary.display()))?;
        let mut server = JanusServer {
            api: SocketAddr::from(([127, 0, 0, 1], port)),
            pid: child.id(),
            child: Some(child),
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        for _ in 0..200 {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                anyhow::bail!("Janus exited at start ({status}): {}", self.log_tail());
            }
            if let Ok(r) = http(self.api, "GET", "/janus/info", &[], b"").await
                && r.status == 200
            {
                anyhow::ensure!(
                    r.text().contains("janus.plugin.videoroom"),
                    "Janus started without the VideoRoom plugin: {}",
                    self.log_tail()
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("Janus did not answer on {}: {}", self.api, self.log_tail())
    }

    /// The end of Janus's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.0.join("janus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Lines of Janus's log that report errors.
    pub fn log_errors(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.0.join("janus.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("[ERR]"))
            .map(str::to_string)
            .collect()
    }

    /// SIGTERM (Janus shuts down in order), then SIGKILL if it lingers.
    pub async fn stop(mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
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
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_loads_only_videoroom_and_http_and_gathers_on_the_veth() {
        let dir = std::env::temp_dir().join(format!("bench-janus-cfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let o = JanusOptions {
            binary: "/usr/bin/janus".into(),
            lib_dir: "/nonexistent/janus".into(),
            event_loops: 1,
        };
        write_config(&dir, &o, 18088).unwrap();
        let main = std::fs::read_to_string(dir.join("janus.jcfg")).unwrap();
        assert!(main.contains(&format!("ice_enforce_list = \"{JANUS_IFACE}\"")));
        assert!(!main.contains("stun_server"));
        let http = std::fs::read_to_string(dir.join("janus.transport.http.jcfg")).unwrap();
        assert!(http.contains("port = 18088") && http.contains("ip = \"127.0.0.1\""));
        let names = |sub: &str| -> Vec<String> {
            std::fs::read_dir(dir.join(sub))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("plugins"), vec![PLUGIN.to_string()]);
        assert_eq!(names("transports"), vec![TRANSPORT.to_string()]);
        assert!(names("events").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
