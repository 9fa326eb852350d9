//! `bench`: drive rtcd with simulated participants and report what it costs.
//!
//! ```text
//! bench run --scenario large-call --participants 500 --duration 30
//! bench run --quick                  # every scenario, small, < 2 minutes
//! bench compare-self --scenario large-call --participants 300
//! bench compare --scenario large-call-screen --participants 300   # rtcd vs Janus
//! bench chat --clients 10000 --posts-per-sec 1000 --channel-members 10 --duration 30
//! bench record --minutes 1 --speakers 3   # recording cost, CPU-s per recorded minute
//! bench transcribe --seconds 60      # Whisper's real-time factor, one thread
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::janus::server::JanusOptions;
use bench::procstat;
use bench::report::{MARKDOWN_HEADER, RunResult};
use bench::scenario::{RunOptions, Scenario};
use bench::sfu::{SfuMode, SfuOptions, find_rtcd_binary};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Load generator and benchmarks for the rtcd SFU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario (or, with --quick and no scenario, all of them small).
    Run(RunArgs),
    /// Run a scenario against rtcd with its fast paths on and off
    /// (1 worker, 1 worker without batching, 2 workers) and print ratios.
    CompareSelf(RunArgs),
    /// Run a scenario against Janus (Debian's package, VideoRoom plugin;
    /// installed if missing) and then against rtcd, and print the ratios.
    /// Needs root: both run in a private network namespace.
    Compare(RunArgs),
    /// Load control's chat: N WebSocket clients in channels of K members,
    /// M posts a second; delivery delay, throughput, CPU and memory.
    Chat(ChatArgs),
    /// Recording cost: a synthetic call (speakers with cameras, a screen
    /// share) captured as offloader's bot would, then recorded audio-only
    /// and composed (WebM, MP4); CPU-seconds per recorded minute.
    Record(RecordArgs),
    /// Transcribe N seconds of synthetic speech (espeak-ng) through the
    /// offloader's VAD and Whisper with one thread; real-time factor.
    Transcribe(TranscribeArgs),
}

#[derive(Args, Clone)]
struct RecordArgs {
    /// Length of the recorded call.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// Speakers, each with a camera (there is one screen share as well).
    #[arg(long, default_value_t = 3)]
    speakers: usize,
    /// Camera size and rate as captured, WxH@FPS.
    #[arg(long, default_value = "640x360@15")]
    camera: String,
    /// Screen share size and rate as captured, WxH@FPS.
    #[arg(long, default_value = "1280x720@5")]
    screen: String,
    /// Composed output: low (360p), standard (720p) or high (1080p).
    #[arg(long, default_value = "standard")]
    profile: String,
    /// Where the capture, the recordings and the JSON report go.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Append a dated section with the figures to this Markdown file.
    #[arg(long)]
    results: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct TranscribeArgs {
    /// Seconds of audio (speech with pauses).
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// A whisper.cpp ggml model. Default: the CTranslate2 model below,
    /// converted once and cached.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A CTranslate2 Whisper model directory (default: the tiny.en that
    /// scripts/setup unpacks).
    #[arg(long, env = "ENCLAVE_WHISPER_CT2")]
    ct2_dir: Option<PathBuf>,
    /// Whisper threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Do not pin the process to one CPU.
    #[arg(long)]
    no_pin: bool,
    /// Where the JSON result goes.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Append a dated section with the figures to this Markdown file.
    #[arg(long)]
    results: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ChatArgs {
    /// WebSocket clients (one user each).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Posts offered per second, spread round robin over the channels.
    #[arg(long, default_value_t = 100.0)]
    posts_per_sec: f64,
    /// Make the clients bot accounts instead of users with passwords:
    /// set-up skips two argon2id hashes per client (minutes at 10,000
    /// clients); what is measured takes the same path.
    #[arg(long)]
    bots: bool,
    /// Members per channel (the clients are dealt into channels of this size).
    #[arg(long, default_value_t = 10)]
    channel_members: usize,
    /// Posting window in seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// The database of the control the bench starts.
    #[arg(long, value_enum, default_value = "sqlite")]
    database: bench::chat::server::Database,
    /// Load this running control (http://host:port) instead of starting
    /// one; it needs the user `benchadmin` (system admin) with the bench's
    /// admin password. No CPU or memory figures then.
    #[arg(long)]
    control_url: Option<String>,
    /// Do not pin control and the generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Where the JSON result and the SVG plot go.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Append a dated section with the figures to this Markdown file.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Before the run, wait at most this many seconds for other processes
    /// to leave the CPUs alone (0: do not wait).
    #[arg(long, default_value_t = 600)]
    wait_quiet: u64,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
    /// Listeners (large-call), people per call (many-calls, soak), people
    /// (meeting) or viewers (broadcast).
    #[arg(long)]
    participants: Option<usize>,
    #[arg(long)]
    speakers: Option<usize>,
    /// Add a screen share.
    #[arg(long)]
    screen: bool,
    /// Speakers also send camera video (simulcast).
    #[arg(long)]
    video: bool,
    /// Calls (many-calls, join-storm, soak).
    #[arg(long)]
    calls: Option<usize>,
    /// Measurement window in seconds.
    #[arg(long)]
    duration: Option<u64>,
    /// Joins per second (join-storm).
    #[arg(long)]
    join_rate: Option<f64>,
    /// rtcd worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Turn rtcd's recvmmsg/GSO batching off.
    #[arg(long)]
    no_batching: bool,
    /// Small scale: every scenario (or the one named) in under two minutes.
    #[arg(long)]
    quick: bool,
    /// Where JSON results and SVG plots go.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Append a dated section with the figures to this Markdown file
    /// (e.g. bench/RESULTS.md).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Generator threads (default: one per CPU the generator may use).
    #[arg(long)]
    gen_threads: Option<usize>,
    /// Do not pin rtcd and the generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Run rtcd inside this process instead of as the rtcd binary.
    #[arg(long)]
    in_process: bool,
    /// Every listener decrypts every packet. By default one in eight does
    /// (and measures delay); the rest count packets by RTP header, which
    /// keeps the generator cheap. ICE, DTLS, SRTP setup and RTCP are real
    /// for all of them either way.
    #[arg(long)]
    full_receivers: bool,
    /// Listeners offer what the web client offers before anything is on:
    /// microphone, camera and screen m-lines that send nothing. By default
    /// they offer a data channel instead, as in every run in RESULTS.md up
    /// to 2026-11-27.
    #[arg(long)]
    web_listeners: bool,
    /// Publishers send each video frame as one burst. By default their
    /// video leaves through a pacer, as a browser's does (2.5 × the target
    /// rate, in 5 ms steps); every run in RESULTS.md up to 2026-11-27 sent
    /// bursts.
    #[arg(long)]
    bursts: bool,
    /// Before each run, wait at most this many seconds for other processes
    /// to leave the CPUs alone (0: do not wait).
    #[arg(long, default_value_t = 600)]
    wait_quiet: u64,
    /// `bench compare`: Janus's shared media event loops (0: Janus's
    /// default, a thread per handle).
    #[arg(long, default_value_t = 0)]
    janus_event_loops: usize,
    /// `bench compare`: run Janus then rtcd this many times and quote the
    /// median ratio (one pair moves by a tenth or more on a shared machine).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    // Before any thread exists: the namespace is entered per thread.
    let janus = match &cli.command {
        Command::Compare(_) => match prepare_janus() {
            Ok(j) => Some(j),
            Err(e) => {
                eprintln!("bench: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = match cli.command {
        Command::Run(a) => runtime.block_on(cmd_run(a, command_line)),
        Command::CompareSelf(a) => runtime.block_on(cmd_compare(a, command_line)),
        Command::Compare(a) => runtime.block_on(async {
            let janus = janus.expect("prepared above");
            tokio::select! {
                r = cmd_compare_janus(a, janus, command_line) => r,
                // Dropping the run stops Janus and rtcd and removes Janus's
                // configuration; the namespace goes with the process.
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            }
        }),
        Command::Chat(a) => cmd_chat(a, command_line),
        Command::Record(a) => cmd_record(a, command_line),
        Command::Transcribe(a) => cmd_transcribe(a, command_line),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Janus installed (if need be, while the host's network is still ours),
/// then this process moved into the namespace both SFUs run in.
fn prepare_janus() -> anyhow::Result<JanusOptions> {
    let janus = bench::janus::server::find_or_install()?;
    bench::netns::enter()?;
    Ok(janus)
}

struct Layout {
    sfu_cpus: Option<Vec<usize>>,
    gen_cpus: Vec<usize>,
    text: String,
}

/// rtcd gets the last `workers` CPUs, the generator the rest, when there
/// are enough; otherwise nothing is pinned.
fn layout(a: &RunArgs, mode: &SfuMode, all: &[usize]) -> Layout {
    let binary = matches!(mode, SfuMode::Binary(_) | SfuMode::Janus(_));
    if !a.no_pin && binary && all.len() > a.workers {
        let split = all.len() - a.workers;
        let (g, s) = all.split_at(split);
        Layout {
            sfu_cpus: Some(s.to_vec()),
            gen_cpus: g.to_vec(),
            text: format!(
                "{} pinned to CPU {s:?}, generator to CPU {g:?}",
                mode.name()
            ),
        }
    } else {
        Layout {
            sfu_cpus: None,
            gen_cpus: all.to_vec(),
            text: format!(
                "not pinned (rtcd and generator share CPUs {all:?}{})",
                if a.no_pin {
                    ""
                } else if !binary {
                    "; rtcd in process"
                } else {
                    "; not enough CPUs for rtcd's workers and the generator"
                }
            ),
        }
    }
}

fn sfu_mode(a: &RunArgs) -> anyhow::Result<SfuMode> {
    if a.in_process {
        return Ok(SfuMode::InProcess);
    }
    match find_rtcd_binary() {
        Some(p) => Ok(SfuMode::Binary(p)),
        None => anyhow::bail!(
            "no rtcd binary next to bench (build it with `cargo build --release -p rtcd`), \
             and RTCD_BIN is not set; or pass --in-process"
        ),
    }
}

fn options(
    a: &RunArgs,
    scenario: Scenario,
    workers: usize,
    batching: bool,
    all_cpus: &[usize],
    command: &str,
) -> anyhow::Result<RunOptions> {
    options_for(
        sfu_mode(a)?,
        a,
        scenario,
        workers,
        batching,
        all_cpus,
        command,
    )
}

fn options_for(
    mode: SfuMode,
    a: &RunArgs,
    scenario: Scenario,
    workers: usize,
    batching: bool,
    all_cpus: &[usize],
    command: &str,
) -> anyhow::Result<RunOptions> {
    let mut a2 = a.clone();
    a2.workers = workers;
    let l = layout(&a2, &mode, all_cpus);
    procstat::pin_current(&l.gen_cpus)?;
    Ok(RunOptions {
        scenario,
        participants: a.participants,
        speakers: a.speakers,
        screen: a.screen,
        video: a.video,
        calls: a.calls,
        duration: a.duration.map(Duration::from_secs),
        join_rate: a.join_rate,
        quick: a.quick,
        sfu: SfuOptions {
            mode,
            workers,
            batching,
            cpus: l.sfu_cpus,
        },
        gen_threads: a.gen_threads.unwrap_or(l.gen_cpus.len()).max(1),
        gen_cpus: l.gen_cpus,
        pinning: l.text,
        progress: true,
        command: command.to_string(),
        full_receivers: a.full_receivers,
        web_listeners: a.web_listeners,
        bursts: a.bursts,
        wait_quiet: Duration::from_secs(a.wait_quiet),
    })
}

fn emit(r: &RunResult, out: &std::path::Path, stem: &str) -> anyhow::Result<()> {
    println!("{}", r.table());
    r.write_files(out, stem)?;
    println!(
        "  files: {}/{stem}.json, {}/{stem}.svg\n",
        out.display(),
        out.display()
    );
    Ok(())
}

fn stem(r: &RunResult, suffix: &str) -> String {
    let date: String = r
        .date
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect();
    format!("{date}-{}{suffix}", r.scenario)
}

/// The section's line on the machine's own stalls, if they were measured.
fn stall_line(r: &RunResult) -> String {
    let f = &r.stall_floor_us;
    if f.count == 0 {
        return String::new();
    }
    format!(
        "- stall floor on the SFU's CPU before the run (1 ms naps, {} of them): woke p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs late\n",
        f.count, f.p99, f.p999, f.max
    )
}

fn append_results(
    path: &std::path::Path,
    title: &str,
    command: &str,
    results: &[&RunResult],
    extra: &str,
) -> anyhow::Result<()> {
    let Some(first) = results.first() else {
        return Ok(());
    };
    let mut s = String::new();
    if !path.exists() {
        s.push_str("# rtcd benchmark results\n\nEach section is one `bench` invocation; older sections stay for comparison. Figures come from `bench` (see bench/src/lib.rs): CPU from /proc/<rtcd pid>/stat over the measurement window, forwarded packets from rtcd's /metrics, delay measured by the receiving participants on the same clock.\n");
    }
    s.push_str(&format!(
        "\n## {} — {title}\n\n- machine: {}\n- command: `{command}`\n- rtcd commit: {}\n- rtcd: {}\n- pinning: {}\n- video sending: {}\n{}\n{MARKDOWN_HEADER}\n",
        first.date,
        first.machine,
        first.rtcd_commit,
        first.rtcd,
        first.pinning,
        first.video_sending,
        stall_line(first),
    ));
    for r in results {
        s.push_str(&r.markdown_row());
        s.push('\n');
    }
    for r in results {
        // Side by side, say which SFU a warning belongs to.
        let who = if results.iter().any(|o| o.sfu_name != r.sfu_name) {
            format!("{} ({})", r.scenario, r.sfu_name)
        } else {
            r.scenario.clone()
        };
        for w in &r.warnings {
            s.push_str(&format!("\n- {who}: {w}"));
        }
    }
    s.push('\n');
    s.push_str(extra);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(s.as_bytes())?;
    Ok(())
}

async fn cmd_run(a: RunArgs, command: String) -> anyhow::Result<bool> {
    let all = procstat::allowed_cpus();
    let scenarios: Vec<Scenario> = match (a.scenario, a.quick) {
        (Some(s), _) => vec![s],
        (None, true) => Scenario::ALL.to_vec(),
        (None, false) => anyhow::bail!("name a --scenario (or pass --quick to run them all)"),
    };
    let started = std::time::Instant::now();
    let mut results = Vec::new();
    let mut ok = true;
    for s in scenarios {
        let o = options(&a, s, a.workers, !a.no_batching, &all, &command)?;
        let r = bench::scenario::run(&o).await?;
        emit(&r, &a.out, &stem(&r, ""))?;
        let correct = r.join.failed == 0
            && r.delivery.missing_streams == 0
            && r.join.connected == r.join.attempted;
        ok &= correct;
        results.push(r);
    }
    if results.len() > 1 {
        println!("{MARKDOWN_HEADER}");
        for r in &results {
            println!("{}", r.markdown_row());
        }
        println!(
            "\n{} scenarios in {:.0} s",
            results.len(),
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = &a.results {
        let refs: Vec<&RunResult> = results.iter().collect();
        let title = if a.quick { "quick" } else { "run" };
        append_results(path, title, &command, &refs, "")?;
    }
    Ok(ok)
}

async fn cmd_compare(a: RunArgs, command: String) -> anyhow::Result<bool> {
    let scenario = a.scenario.unwrap_or(Scenario::LargeCall);
    let all = procstat::allowed_cpus();
    let variants = [
        ("1 worker, batching", 1usize, true),
        ("1 worker, no batching", 1, false),
        ("2 workers, batching", 2, true),
    ];
    let mut results = Vec::new();
    for (name, workers, batching) in variants {
        eprintln!("bench: {} with {name}", scenario.name());
        let o = options(&a, scenario, workers, batching, &all, &command)?;
        let r = bench::scenario::run(&o).await?;
        let suffix = format!("-w{workers}{}", if batching { "" } else { "-nobatch" });
        emit(&r, &a.out, &stem(&r, &suffix))?;
        results.push((name, r));
    }
    let base = &results[0].1;
    let mut extra = String::from(
        "\nRatios against 1 worker with batching (CPU-s per million forwarded packets, lower is better; added delay p99):\n\n",
    );
    for (name, r) in &results {
        let line = format!(
            "- {name}: CPU/Mpkt ×{:.2}, recv syscalls/pkt {:.3}, send syscalls/pkt {:.3}, added delay p99 ×{:.2}\n",
            r.sfu.cpu_s_per_million_forwarded / base.sfu.cpu_s_per_million_forwarded.max(1e-9),
            r.sfu.udp_recv_syscalls / r.sfu.forwarded_packets.max(1.0),
            r.sfu.udp_send_syscalls / r.sfu.forwarded_packets.max(1.0),
            r.added_delay_us.p99 / base.added_delay_us.p99.max(1e-9),
        );
        extra.push_str(&line);
    }
    println!("{MARKDOWN_HEADER}");
    for (_, r) in &results {
        println!("{}", r.markdown_row());
    }
    println!("{extra}");
    if let Some(path) = &a.results {
        let refs: Vec<&RunResult> = results.iter().map(|(_, r)| r).collect();
        append_results(path, "rtcd against itself", &command, &refs, &extra)?;
    }
    Ok(results.iter().all(|(_, r)| r.valid))
}

/// The same scenario against Janus, then against rtcd, in this one
/// process (already inside the network namespace), and their ratios.
async fn cmd_compare_janus(
    a: RunArgs,
    mut janus: JanusOptions,
    command: String,
) -> anyhow::Result<bool> {
    janus.event_loops = a.janus_event_loops;
    let scenario = a
        .scenario
        .ok_or_else(|| anyhow::anyhow!("name a --scenario"))?;
    anyhow::ensure!(
        bench::compare::janus_can_run(scenario),
        "{} cannot run against Janus: {}",
        scenario.name(),
        bench::compare::JANUS_SCENARIOS
    );
    let all = procstat::allowed_cpus();
    eprintln!(
        "bench: {} against Janus ({})",
        scenario.name(),
        janus.binary.display()
    );
    let mut rounds = Vec::new();
    let mut extra = String::new();
    for round in 1..=a.rounds {
        let label = if a.rounds > 1 {
            format!(" (round {round} of {})", a.rounds)
        } else {
            String::new()
        };
        eprintln!("bench: {} against Janus{label}", scenario.name());
        let o = options_for(
            SfuMode::Janus(janus.clone()),
            &a,
            scenario,
            1,
            true,
            &all,
            &command,
        )?;
        let janus_run = bench::scenario::run(&o).await?;
        emit(&janus_run, &a.out, &stem(&janus_run, "-janus"))?;
        eprintln!("bench: {} against rtcd{label}", scenario.name());
        let o = options(&a, scenario, a.workers, !a.no_batching, &all, &command)?;
        let rtcd_run = bench::scenario::run(&o).await?;
        emit(&rtcd_run, &a.out, &stem(&rtcd_run, "-rtcd"))?;
        let table = bench::compare::table(&rtcd_run, &janus_run);
        println!("{MARKDOWN_HEADER}");
        println!("{}", rtcd_run.markdown_row());
        println!("{}", janus_run.markdown_row());
        println!("{table}");
        extra.push_str(&table);
        rounds.push((rtcd_run, janus_run));
    }
    if rounds.len() > 1 {
        let summary = bench::compare::rounds_summary(&rounds);
        println!("{summary}");
        extra.push_str(&summary);
    }
    let (last_rtcd, _) = rounds.last().expect("at least one round");
    std::fs::write(
        a.out.join(format!("{}.md", stem(last_rtcd, "-vs-janus"))),
        &extra,
    )?;
    let runs: Vec<&RunResult> = rounds.iter().flat_map(|(r, j)| [r, j]).collect();
    if let Some(path) = &a.results {
        append_results(path, "rtcd against Janus", &command, &runs, &extra)?;
    }
    // Exit status: did both runs work (every join, every stream)? Speed
    // on a shared machine is reported, not judged.
    Ok(runs.iter().all(|r| bench::compare::worked(r)))
}

/// control gets the last CPU and the generator the others, when there are
/// at least two; the generator runs one runtime thread per CPU it has.
fn cmd_chat(a: ChatArgs, command: String) -> anyhow::Result<bool> {
    use bench::chat::{ChatOptions, server};
    let all = procstat::allowed_cpus();
    let external = a.control_url.is_some();
    let control_bin = if external {
        None
    } else {
        Some(server::find_control_binary().ok_or_else(|| {
            anyhow::anyhow!(
                "no control binary next to bench (build it with `cargo build --release -p control`), \
                 and CONTROL_BIN is not set; or pass --control-url"
            )
        })?)
    };
    let (control_cpus, gen_cpus, pinning) = if !a.no_pin && !external && all.len() >= 2 {
        let (g, c) = all.split_at(all.len() - 1);
        (
            Some(c.to_vec()),
            g.to_vec(),
            format!(
                "control pinned to CPU {c:?}, generator to CPU {g:?}{}",
                if a.database == server::Database::Postgres {
                    "; PostgreSQL not pinned"
                } else {
                    ""
                }
            ),
        )
    } else {
        (None, all.clone(), format!("not pinned (CPUs {all:?})"))
    };
    procstat::pin_current(&gen_cpus)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(gen_cpus.len().max(1))
        .enable_all()
        .build()?;
    let o = ChatOptions {
        clients: a.clients,
        posts_per_sec: a.posts_per_sec,
        channel_members: a.channel_members,
        duration: Duration::from_secs(a.duration),
        database: a.database,
        control_url: a.control_url.clone(),
        control_bin,
        control_cpus,
        gen_cpus,
        pinning,
        command: command.clone(),
        wait_quiet: Duration::from_secs(a.wait_quiet),
        progress: true,
        accounts: if a.bots {
            bench::chat::api::Accounts::Bots
        } else {
            bench::chat::api::Accounts::Users
        },
    };
    let r = runtime.block_on(bench::chat::run(&o))?;
    println!("{}", r.table());
    let date: String = r
        .date
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect();
    let stem = format!(
        "{date}-chat-{}-n{}-m{}-k{}",
        r.database, r.clients, r.target_posts_per_sec, r.channel_members
    );
    r.write_files(&a.out, &stem)?;
    println!(
        "  files: {}/{stem}.json, {}/{stem}.svg\n",
        a.out.display(),
        a.out.display()
    );
    if let Some(path) = &a.results {
        append_chat_results(path, &command, &r)?;
    }
    Ok(r.delivery.ok() && r.connect_failed == 0)
}

fn append_chat_results(
    path: &std::path::Path,
    command: &str,
    r: &bench::chat::report::ChatResult,
) -> anyhow::Result<()> {
    use bench::chat::report::MARKDOWN_HEADER as CHAT_HEADER;
    let mut s = format!(
        "\n### {} — chat\n\n- machine: {}\n- command: `{command}`\n- commit: {}\n- control: {}\n- pinning: {}\n- {} channels of {} {}; set-up {:.0} s, connect {:.1} s; window {:.1} s; post request p50/p99 {:.1} / {:.1} ms; {}\n\n{CHAT_HEADER}\n{}\n",
        r.date,
        r.machine,
        r.commit,
        r.control,
        r.pinning,
        r.channels,
        r.channel_members,
        r.accounts,
        r.setup_seconds,
        r.connect_seconds,
        r.window_seconds,
        r.post_latency_ms.p50,
        r.post_latency_ms.p99,
        if r.valid {
            "valid"
        } else {
            "NOT valid (see below)"
        },
        r.markdown_row()
    );
    for w in r
        .warnings
        .iter()
        .chain(&r.post_errors)
        .chain(&r.connect_errors)
        .chain(&r.delivery.examples)
    {
        s.push_str(&format!("\n- {w}"));
    }
    s.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(s.as_bytes())?;
    Ok(())
}

fn cmd_record(a: RecordArgs, command: String) -> anyhow::Result<bool> {
    use bench::record::{RecordOptions, markdown, run};
    use signaling::jobs::QualityProfile;
    let size = |s: &str| -> anyhow::Result<(u32, u32, u32)> {
        let bad = || anyhow::anyhow!("{s}: want WxH@FPS, e.g. 640x360@15");
        let (wh, fps) = s.split_once('@').ok_or_else(bad)?;
        let (w, h) = wh.split_once('x').ok_or_else(bad)?;
        let v = (w.parse()?, h.parse()?, fps.parse()?);
        anyhow::ensure!(
            v.0 >= 16 && v.1 >= 16 && v.2 >= 1 && v.0 % 2 == 0 && v.1 % 2 == 0,
            bad()
        );
        Ok(v)
    };
    let profile = match a.profile.as_str() {
        "low" => QualityProfile::Low,
        "standard" => QualityProfile::Standard,
        "high" => QualityProfile::High,
        p => anyhow::bail!("--profile {p}: want low, standard or high"),
    };
    anyhow::ensure!(
        a.minutes > 0.0 && a.speakers >= 1,
        "--minutes and --speakers must be positive"
    );
    let o = RecordOptions {
        minutes: a.minutes,
        speakers: a.speakers,
        camera: size(&a.camera)?,
        screen: size(&a.screen)?,
        profile,
        out: a.out.clone(),
    };
    let r = run(&o)?;
    let when = bench::scenario::now_utc();
    let md = markdown(&r, &when);
    println!("{md}");
    let json = a.out.join("record.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&r)?)?;
    println!("  file: {}\n", json.display());
    if let Some(path) = &a.results {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        write!(f, "\n{}\n- command: `{command}`\n", md)?;
    }
    Ok(true)
}

fn cmd_transcribe(a: TranscribeArgs, command: String) -> anyhow::Result<bool> {
    let cache = std::env::var_os("ENCLAVE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("enclave"))
        })
        .ok_or_else(|| anyhow::anyhow!("no cache directory: set ENCLAVE_CACHE_DIR or HOME"))?;
    let o = bench::transcribe::TranscribeOptions {
        seconds: a.seconds,
        model: a.model,
        ct2_dir: a
            .ct2_dir
            .unwrap_or_else(|| cache.join("models/whisper-tiny.en-ct2")),
        cache_dir: cache.join("models/ggml"),
        threads: a.threads,
        // The last CPU this process may use, as rtcd gets in the SFU runs.
        pin: if a.no_pin {
            None
        } else {
            procstat::allowed_cpus().last().copied()
        },
        command,
    };
    let r = bench::transcribe::run(&o)?;
    println!("{}", r.table());
    let date: String = r
        .date
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect();
    let stem = format!("{date}-transcribe-{:.0}s-t{}", r.audio_seconds, r.threads);
    r.write_files(&a.out, &stem)?;
    println!("  file: {}/{stem}.json\n", a.out.display());
    if let Some(path) = &a.results {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(r.markdown_section().as_bytes())?;
    }
    Ok(true)
}
