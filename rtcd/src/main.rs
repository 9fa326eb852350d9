//! The rtcd binary: parse and check all configuration first (exit 64 on a
//! bad config, every problem listed), then bind, then run until SIGTERM or
//! SIGINT, then drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use rtcd::auth::{Role, mint_token};
use rtcd::{Config, Rtcd};
use signaling::CallId;

const CONFIG_HELP: &str = "\
CONFIGURATION (file keys; each can be set as RTCD_<SECTION>__<KEY>, e.g. RTCD_API__LISTEN):
  node_id                       name of this node in logs and to control       [rtcd]
  rtc.bind_ip                   address the media sockets bind to              [0.0.0.0]
  rtc.port                      the one UDP port; ICE-TCP uses the same number [8443]
  rtc.ice_tcp                   accept ICE-TCP for networks that block UDP     [true]
  rtc.advertise                 IPs to advertise (default: interface addresses
                                without loopback and container bridges)        [[]]
  rtc.nat                       1:1 NAT pairs \"external/internal\"              [[]]
  rtc.allow_loopback            advertise loopback (tests, one machine)        [false]
  rtc.workers                   worker threads, 0 = one per core               [0]
  rtc.batching                  recvmmsg/GSO batching                          [true]
  rtc.socket_buffer_bytes       UDP send/receive buffer size                   [4194304]
  rtc.max_sessions_per_worker   sessions a worker accepts                      [10000]
  rtc.connect_timeout_secs      a session that never connects is closed after  [30]
  rtc.disconnect_timeout_secs   a session that lost connectivity is closed     [15]
  rtc.resend_window_ms          video kept per subscriber for NACKs, longest,
                                0 = none                                       [1000]
  rtc.resend_window_min_ms      shortest; grows with the round trip            [250]
  rtc.resend_window_packets     at most this many packets per video stream     [512]
  rtc.fanout_slice              video writes between two socket reads, so
                                audio overtakes a large video fan-out          [128]
  api.listen                    HTTP: control API, WHIP/WHEP, metrics, health  [127.0.0.1:8045]
  api.keys                      control nodes' bearer keys (≥ 32 chars each)   [[]]
  api.token_secret              signs WHIP/WHEP tokens (≥ 32 chars; empty: off)[\"\"]
  api.cors_origins              origins allowed to use WHIP/WHEP               [[\"*\"]]
  api.max_message_bytes         largest control message or WHIP body           [262144]
  drain.deadline_secs           SIGTERM: how long running calls may go on      [300]
  log.filter                    tracing filter                                 [info]
  log.json                      JSON logs                                      [false]

An example with comments: deploy/rtcd.toml.";

/// The Enclave SFU.
#[derive(Parser)]
#[command(version, about, after_long_help = CONFIG_HELP)]
struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(short, long, env = "RTCD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Development mode: random keys printed at start, loopback advertised,
    /// one worker. Never for production.
    #[arg(long)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SFU (the default).
    Run,
    /// Check the configuration and exit.
    CheckConfig,
    /// Print a WHIP/WHEP bearer token signed with api.token_secret.
    Token {
        #[arg(long)]
        call: String,
        #[arg(long, value_enum)]
        role: TokenRole,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TokenRole {
    Publish,
    Play,
}

fn random_secret() -> String {
    use rand::Rng as _;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load_unchecked(cli.config.as_deref()) {
        Ok(c) => c,
        Err(errors) => return bad_config(errors),
    };
    if cli.dev {
        // Dev mode fills in what a one-machine trial needs before checking.
        if config.api.keys.is_empty() {
            config.api.keys = vec![random_secret()];
        }
        if config.api.token_secret.is_empty() {
            config.api.token_secret = random_secret();
        }
        config.rtc.allow_loopback = true;
        config.rtc.workers = 1;
    }
    if let Err(errors) = config.validate() {
        return bad_config(errors);
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Command::Token { call, role, ttl } => {
            if config.api.token_secret.is_empty() {
                eprintln!("rtcd: api.token_secret is not set, so WHIP/WHEP are off");
                return ExitCode::from(64);
            }
            let call = match CallId::new(call) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("rtcd: --call: {e}");
                    return ExitCode::from(64);
                }
            };
            let role = match role {
                TokenRole::Publish => Role::Publish,
                TokenRole::Play => Role::Play,
            };
            println!(
                "{}",
                mint_token(
                    &config.api.token_secret,
                    &call,
                    role,
                    Duration::from_secs(ttl)
                )
            );
            ExitCode::SUCCESS
        }
        Command::Run => {
            init_logs(&config);
            if cli.dev {
                config.node_id = "rtcd-dev".into();
                let call = CallId::new("demo").expect("valid id");
                eprintln!("rtcd dev mode (random secrets, loopback advertised):");
                eprintln!("  control API key: {}", config.api.keys[0]);
                eprintln!(
                    "  WHIP  POST http://{}/whip/demo  Bearer {}",
                    config.api.listen,
                    mint_token(
                        &config.api.token_secret,
                        &call,
                        Role::Publish,
                        Duration::from_secs(86_400)
                    )
                );
                eprintln!(
                    "  WHEP  POST http://{}/whep/demo  Bearer {}",
                    config.api.listen,
                    mint_token(
                        &config.api.token_secret,
                        &call,
                        Role::Play,
                        Duration::from_secs(86_400)
                    )
                );
            }
            run(config)
        }
    }
}

fn bad_config(errors: Vec<String>) -> ExitCode {
    eprintln!("rtcd: the configuration has {} problem(s):", errors.len());
    for e in errors {
        eprintln!("  - {e}");
    }
    ExitCode::from(64)
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log.filter);
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("rtcd-io")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rtcd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let deadline = config.drain_deadline();
        // Listen before starting, so a SIGTERM during start-up still drains.
        let signal = signals();
        let rtcd = match Rtcd::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("rtcd: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        signal.await;
        let left = rtcd.drain(deadline).await;
        if left > 0 {
            tracing::warn!(
                calls = left,
                "drain deadline passed; closing the calls left"
            );
        }
        rtcd.stop().await;
        tracing::info!("rtcd stopped");
        ExitCode::SUCCESS
    })
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on
/// the first signal.
fn signals() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
    }
}
