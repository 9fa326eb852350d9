//! Headless Chromium scenarios through `tests/browser/run.mjs`.
//!
//! [`run_scenario`] runs `node run.mjs` on a scenario (JSON), bounded by a
//! timeout, and returns the one JSON line it prints. The format of both is
//! described in `tests/browser/README.md`. The browser's console and
//! run.mjs's progress go to a log file under `tests/artifacts/`, whose path
//! is added to the result as `"log"` and quoted in errors.
//!
//! Run scenarios from a binary that entered [`crate::netns`] first, so
//! Chromium sees only loopback.
//!
//! Tools come from `scripts/setup`: `node` (or `$ENCLAVE_NODE`), Chromium
//! at `/usr/bin/chromium` (or `$ENCLAVE_CHROMIUM`) and
//! `tests/browser/node_modules`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// `tests/browser` in the source tree.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// `tests/artifacts` (git-ignored): logs, scenarios and screenshots.
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts")
}

/// The Chromium binary run.mjs will start.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("ENCLAVE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn node_program() -> OsString {
    std::env::var_os("ENCLAVE_NODE").unwrap_or_else(|| "node".into())
}

/// Why browser scenarios cannot run here, or `None` when they can.
pub fn browser_unavailable_reason() -> Option<String> {
    let node = node_program();
    let node_found = if Path::new(&node).components().count() > 1 {
        Path::new(&node).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&node).is_file()))
    };
    if !node_found {
        return Some(format!(
            "{} not found (run scripts/setup)",
            node.to_string_lossy()
        ));
    }
    let chromium = chromium_path();
    if !chromium.is_file() {
        return Some(format!(
            "{} not found (run scripts/setup)",
            chromium.display()
        ));
    }
    let pw = browser_dir().join("node_modules/playwright-core/package.json");
    if !pw.is_file() {
        return Some(format!("{} missing (run scripts/setup)", pw.display()));
    }
    None
}

/// Node, Chromium and tests/browser/node_modules are all present.
pub fn browser_available() -> bool {
    browser_unavailable_reason().is_none()
}

/// True when a missing browser must fail the tests rather than skip them:
/// `ENCLAVE_REQUIRE_BROWSER=1`, which `scripts/test` sets after
/// `scripts/setup` installed everything.
pub fn browser_required() -> bool {
    matches!(
        std::env::var("ENCLAVE_REQUIRE_BROWSER").as_deref(),
        Ok("1" | "true" | "yes")
    )
}

/// Runs a scenario and returns its result when it ran through
/// (`"ok": true`); any failure is an error carrying run.mjs's reason and
/// the end of the log. Whether the media numbers are good enough is the
/// caller's to assert.
pub fn run_scenario(scenario: &Value) -> Result<Value> {
    let result = run_scenario_unchecked(scenario)?;
    if result.get("ok") != Some(&Value::Bool(true)) {
        let log = result
            .get("log")
            .and_then(Value::as_str)
            .unwrap_or_default();
        bail!(
            "scenario {} failed: {}\nresult: {result}\n--- end of {log} ---\n{}",
            scenario.get("scenario").unwrap_or(&Value::Null),
            result
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("(no error given)"),
            tail(Path::new(log), 40),
        );
    }
    Ok(result)
}

/// Like [`run_scenario`], but returns whatever JSON result run.mjs
/// printed, `"ok": false` included (for tests that expect a failure). Errs
/// only when no result came: node missing, timeout, no JSON line.
pub fn run_scenario_unchecked(scenario: &Value) -> Result<Value> {
    let name = scenario
        .get("scenario")
        .and_then(Value::as_str)
        .unwrap_or("scenario");
    let dir = new_artifact_dir(name)?;
    let scenario_path = dir.join("scenario.json");
    fs::write(&scenario_path, serde_json::to_vec_pretty(scenario)?)?;
    let log_path = dir.join("run.log");
    let log = File::create(&log_path)?;

    // run.mjs bounds itself with timeout_ms; this outer bound also covers
    // Chromium start-up and clean-up, and a hung node.
    let inner = scenario
        .get("timeout_ms")
        .and_then(Value::as_u64)
        .unwrap_or(60_000);
    let timeout = Duration::from_millis(inner) + Duration::from_secs(30);

    let mut child = Command::new(node_program())
        .arg(browser_dir().join("run.mjs"))
        .arg(&scenario_path)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} run.mjs", node_program().to_string_lossy()))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });

    let status = wait_or_kill(&mut child, timeout)?;
    let out = reader.join().unwrap_or_default();
    let Some(status) = status else {
        bail!(
            "scenario {name} timed out after {timeout:?}; killed\n--- end of {} ---\n{}",
            log_path.display(),
            tail(&log_path, 40)
        );
    };
    let line = out.lines().rev().find(|l| l.trim_start().starts_with('{'));
    let Some(line) = line else {
        bail!(
            "scenario {name}: run.mjs ({status}) printed no JSON result\nstdout: {out}\n--- end of {} ---\n{}",
            log_path.display(),
            tail(&log_path, 40)
        );
    };
    let mut result: Value = serde_json::from_str(line)
        .with_context(|| format!("scenario {name}: bad JSON from run.mjs: {line}"))?;
    if let Some(obj) = result.as_object_mut() {
        obj.insert("log".into(), Value::String(log_path.display().to_string()));
    }
    Ok(result)
}

/// The reference WHIP/WHEP server (`tests/browser/reference-server.mjs`),
/// stopped on drop. Its media end is a Chromium page; it exists to check
/// the client pages and to show what a compliant server answers.
pub struct ReferenceServer {
    child: Child,
    /// `http://127.0.0.1:PORT`, the `base` for the whip-whep scenario.
    pub base: String,
    /// Its stderr: every request, and its page's console.
    pub log: PathBuf,
}

impl ReferenceServer {
    /// Starts it with extra arguments (`--token T`, `--patch 405`,
    /// `--cors no-expose`...) and waits until it is ready.
    pub fn start(args: &[&str]) -> Result<Self> {
        let dir = new_artifact_dir("reference-server")?;
        let log = dir.join("server.log");
        let mut child = Command::new(node_program())
            .arg(browser_dir().join("reference-server.mjs"))
            .args(args)
            .current_dir(browser_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(&log)?))
            .process_group(0)
            .spawn()
            .context("starting reference-server.mjs")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = ReferenceServer {
            child,
            base: String::new(),
            log,
        };
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let ready: Option<Value> = serde_json::from_str(&line).ok();
        match ready
            .as_ref()
            .and_then(|v| v.get("base"))
            .and_then(Value::as_str)
        {
            Some(base) => server.base = base.to_owned(),
            None => bail!(
                "reference server did not report ready (got {line:?})\n--- end of {} ---\n{}",
                server.log.display(),
                tail(&server.log, 40)
            ),
        }
        Ok(server)
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group we created for this child,
        // which is not reaped yet, so the group id cannot have been reused.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        if !matches!(
            wait_or_kill(&mut self.child, Duration::from_secs(10)),
            Ok(Some(_))
        ) {
            let _ = self.child.wait();
        }
    }
}

/// Waits for the child; on timeout kills its whole process group (node
/// and the Chromium it started) and returns `None`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let pgid = child.id() as libc::pid_t;
            // SAFETY: as in ReferenceServer::drop: our own, unreaped group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn new_artifact_dir(name: &str) -> Result<PathBuf> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = artifacts_dir().join(format!(
        "{safe}-{ms}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The last `n` lines of a log file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
