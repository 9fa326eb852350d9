//! The control binary: parse and check all configuration first (exit 64 on
//! a bad config, every problem listed), then connect and migrate the
//! database, then bind, then serve until SIGTERM or SIGINT, then drain.
//! The admin commands (create-user, reset-password, list-sessions,
//! disable-user, enable-user) share the configuration and the database;
//! m365-package needs the configuration only.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use control::auth::password;
use control::bus::{EventBus, LocalBus, PgBus};
use control::clock::{Clock, SystemClock};
use control::db::users::{self, SystemRole};
use control::db::{Backend, Db, sessions};
use control::{AppState, Config};

const CONFIG_HELP: &str = "\
CONFIGURATION (file keys; each can be set as ENCLAVE_<SECTION>__<KEY>, e.g. ENCLAVE_SERVER__LISTEN):
  server.listen                  HTTP API, WebSocket, metrics, health          [127.0.0.1:8065]
  server.node_id                 this node's name in logs and on the bus       [control]
  server.data_dir                SQLite file and local files (single node)     [enclave-data]
  server.drain_secs              SIGTERM: how long open requests may go on     [30]
  database.url                   postgres://… or sqlite://… (empty: SQLite in data_dir)
  database.max_connections       pool size                                     [10]
  auth.idle_timeout_secs         an unused session ends after                  [900]
  auth.absolute_lifetime_secs    any session ends after                        [43200]
  auth.password_min_length       shortest password                             [12]
  auth.password_min_classes      of lower/upper/digit/other, how many          [3]
  auth.lockout_attempts          failed logins in a row that lock an account   [5]
  auth.lockout_secs              how long the lock lasts                       [900]
  auth.login_rate_per_minute     login attempts per client address             [20]
  auth.cookie_secure             session cookie only over HTTPS                [true]
  limits.max_body_bytes          largest JSON request body                     [262144]
  limits.max_post_chars          longest post                                  [16383]
  events.replay_window_secs      how far back a reconnect can resume           [300]
  events.retention_secs          events are kept in the replay log for         [86400]
  events.socket_queue            events queued per socket before it is closed  [256]
  events.ping_interval_secs      WebSocket keep-alive                          [30]
  log.filter                     tracing filter                                [info]
  log.json                       JSON logs                                     [false]
  log.audit_file                 audit log file (JSON lines; empty: stdout)    [\"\"]
  rtcd.mode                      embedded (media node in this process) or external [embedded]
  rtcd.media.port                embedded: media port, UDP and ICE-TCP         [8443]
  rtcd.media.bind_ip             embedded: address the media port binds to     [0.0.0.0]
  rtcd.media.advertise           embedded: addresses given to clients (empty: this machine's)
  rtcd.media.nat                 embedded: \"external/internal\" address pairs
  rtcd.media.workers             embedded: media threads (0: one per core)     [0]
  rtcd.nodes                     external: API URLs, e.g. [\"http://10.0.0.5:8045\"]
  rtcd.dns                       external: host:port whose A/AAAA records are nodes
  rtcd.dns_refresh_secs          how often rtcd.dns is resolved again          [30]
  rtcd.api_key                   external: one of the nodes' api.keys (32+ characters)
  rtcd.heartbeat_ms              each node is asked for its load this often   [1000]
  rtcd.node_timeout_ms           a node silent this long is down               [3000]
  rtcd.reconnect_max_ms          longest wait between reconnection attempts    [5000]
  rtcd.drain_move_margin_secs    a draining node's calls move this long before
                                 its drain deadline                            [30]
  calls.max_participants         sessions in one call                          [100]
  calls.ring_timeout_secs        a direct or group call rings each callee for  [30]
  calls.reconnect_grace_secs     a participant whose media closed may offer again within [15]
  calls.reactions_per_minute     emoji reactions per session, on each node     [30]
  calls.sweep_ms                 how often rings and lost sessions are checked [1000]
  [[calls.ice_servers]]          STUN/TURN for clients: urls, and username + credential
                                 or auth_secret (+ credential_ttl_secs [43200])    [none]";

/// Enclave's control plane.
#[derive(Parser)]
#[command(version, about, after_long_help = CONFIG_HELP)]
struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(short, long, env = "ENCLAVE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default). On first run, creates a system admin
    /// and prints its password once.
    Serve,
    /// Check the configuration and exit.
    CheckConfig,
    /// Create a local user. The password is read from standard input (one
    /// line) with --password-stdin, otherwise generated and printed.
    CreateUser {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, default_value = "")]
        display_name: String,
        /// admin, user or guest.
        #[arg(long, default_value = "user")]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password, lift any lockout and end every session of the user.
    ResetPassword {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List live sessions (all users, or one).
    ListSessions {
        #[arg(long)]
        username: Option<String>,
    },
    /// Switch an account off: no login of any kind; its sessions and
    /// access tokens end now, its open sockets close at their next
    /// keep-alive check (events.ping_interval_secs).
    DisableUser {
        #[arg(long)]
        username: String,
    },
    /// Switch a disabled account on again (the user logs in anew).
    EnableUser {
        #[arg(long)]
        username: String,
    },
    /// Write the Teams app package ([m365] must be enabled) to upload in
    /// the Teams admin center: the same zip as GET /api/v1/m365/app-package.
    M365Package {
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!(
                "control: the configuration has {} problem(s):",
                errors.len()
            );
            for e in errors {
                eprintln!("  - {e}");
            }
            return ExitCode::from(64);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::CheckConfig = command {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Command::M365Package { out } = &command {
        return write_m365_package(&config, out);
    }
    if let Err(e) = init_logs(&config) {
        eprintln!("control: {e:#}");
        return ExitCode::from(64);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("control")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("control: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(config: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::filter::{EnvFilter, Targets, filter_fn};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, fmt};

    let ops_filter = EnvFilter::new(&config.log.filter);
    let not_audit = filter_fn(|m| m.target() != "audit");
    let ops = if config.log.json {
        fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(not_audit)
            .with_filter(ops_filter)
            .boxed()
    } else {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(not_audit)
            .with_filter(ops_filter)
            .boxed()
    };
    let audit_targets = Targets::new().with_target("audit", tracing::Level::INFO);
    let audit = if config.log.audit_file.is_empty() {
        fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(std::io::stdout)
            .with_filter(audit_targets)
            .boxed()
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.log.audit_file)
            .map_err(|e| anyhow::anyhow!("log.audit_file {}: {e}", config.log.audit_file))?;
        fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(Arc::new(file))
            .with_filter(audit_targets)
            .boxed()
    };
    tracing_subscriber::registry().with(ops).with(audit).init();
    Ok(())
}

fn write_m365_package(config: &Config, out: &std::path::Path) -> ExitCode {
    use control::m365::package::{self, PackageError};
    let c = &config.m365;
    match package::build(c) {
        Ok(zip) => match std::fs::write(out, &zip) {
            Ok(()) => {
                eprintln!(
                    "wrote {} ({} bytes): app {} version {}, manifest {}; upload it in the Teams admin center",
                    out.display(),
                    zip.len(),
                    c.app_id(),
                    c.app.version,
                    c.app.manifest_version
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("control: {}: {e}", out.display());
                ExitCode::FAILURE
            }
        },
        // Both are the configuration's doing.
        Err(e @ (PackageError::Disabled | PackageError::Invalid(_))) => {
            eprintln!("control: {e}");
            ExitCode::from(64)
        }
        Err(e) => {
            eprintln!("control: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
    } else {
        Ok((password::generate(), true))
    }
}

async fn run(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    let url = config.database_url();
    let db = Db::connect(&url, config.database.max_connections)
        .await
        .map_err(|e| anyhow::anyhow!("database: {e}"))?;
    let bus: Arc<dyn EventBus> = match (&command, db.backend) {
        (Command::Serve, Backend::Postgres) => PgBus::connect(&url, &config.server.node_id).await?,
        _ => LocalBus::new(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = if matches!(command, Command::Serve) && config.storage.s3.is_none() {
        // At start-up the local store also sweeps temporary files a crash
        // left behind.
        let store = control::storage::LocalStore::open(config.local_store_dir())
            .await
            .map_err(|e| anyhow::anyhow!("local file store: {e}"))?;
        AppState::with_store(config, db, clock, bus, Arc::new(store))
    } else {
        AppState::new(config, db, clock, bus)
    };
    match command {
        Command::CheckConfig | Command::M365Package { .. } => Ok(ExitCode::SUCCESS),
        Command::Serve => serve(state).await,
        Command::CreateUser {
            username,
            email,
            display_name,
            role,
            password_stdin,
        } => {
            let Some(role) = SystemRole::parse(&role) else {
                eprintln!("control: --role must be admin, user or guest");
                return Ok(ExitCode::from(64));
            };
            let (pw, generated) = read_password(password_stdin)?;
            match control::api::users::create_local_user(
                &state,
                &username,
                &pw,
                email.as_deref(),
                &display_name,
                role,
            )
            .await
            {
                Ok(u) => {
                    control::audit::record(
                        "user_create",
                        &control::audit::Actor {
                            username: "cli",
                            ip: "local",
                            ..Default::default()
                        },
                        "success",
                        &format!("user {} ({}) as {}", u.id, u.username, role.as_str()),
                    );
                    eprintln!("created {} ({}) as {}", u.username, u.id, role.as_str());
                    if generated {
                        eprintln!("password (shown once): {pw}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("control: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::ResetPassword {
            username,
            password_stdin,
        } => {
            let Some(creds) = users::by_username(&state.db, &username).await? else {
                eprintln!("control: no user {username:?}");
                return Ok(ExitCode::FAILURE);
            };
            let (pw, generated) = read_password(password_stdin)?;
            let pw_shown = if generated { pw.clone() } else { String::new() };
            if let Err(p) = password::check_policy(&state.config.auth, &username, &pw) {
                eprintln!("control: {}", p.join("; "));
                return Ok(ExitCode::FAILURE);
            }
            let hash = tokio::task::spawn_blocking(move || password::hash(&pw)).await??;
            users::set_password(&state.db, &creds.user.id, &hash).await?;
            let n = sessions::revoke_all(&state.db, &creds.user.id, state.clock.now_ms()).await?;
            control::audit::record(
                "password_reset",
                &control::audit::Actor {
                    user_id: &creds.user.id,
                    username: "cli",
                    ip: "local",
                },
                "success",
                &format!("{n} session(s) ended"),
            );
            eprintln!("password of {username} reset; {n} session(s) ended");
            if generated {
                // Only the hash is kept: this is the one place it is shown.
                eprintln!("new password (shown once): {pw_shown}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DisableUser { username } => set_disabled(&state, &username, true).await,
        Command::EnableUser { username } => set_disabled(&state, &username, false).await,
        Command::ListSessions { username } => {
            let user_id = match &username {
                None => None,
                Some(name) => match users::by_username(&state.db, name).await? {
                    Some(c) => Some(c.user.id),
                    None => {
                        eprintln!("control: no user {name:?}");
                        return Ok(ExitCode::FAILURE);
                    }
                },
            };
            let now = state.clock.now_ms();
            let idle = state.config.auth.idle_timeout_secs as i64 * 1000;
            let all = users::list(&state.db).await?;
            println!(
                "{:<26}  {:<20}  {:<15}  {:>10}  {:>10}",
                "session", "user", "ip", "idle s", "left s"
            );
            for s in sessions::list_live(&state.db, user_id.as_deref(), now).await? {
                if now - s.last_seen_at >= idle {
                    continue;
                }
                let name = all
                    .iter()
                    .find(|u| u.id == s.user_id)
                    .map_or("?", |u| u.username.as_str());
                println!(
                    "{:<26}  {:<20}  {:<15}  {:>10}  {:>10}",
                    s.id,
                    name,
                    s.ip,
                    (now - s.last_seen_at) / 1000,
                    (s.expires_at - now) / 1000
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn set_disabled(
    state: &AppState,
    username: &str,
    disabled: bool,
) -> anyhow::Result<ExitCode> {
    let Some(creds) = users::by_username(&state.db, username).await? else {
        eprintln!("control: no user {username:?}");
        return Ok(ExitCode::FAILURE);
    };
    let actor = control::audit::Actor {
        user_id: "",
        username: "cli",
        ip: "local",
    };
    match control::api::users::set_account_disabled(state, &creds.user.id, disabled, &actor).await {
        Ok((_, ended)) if disabled => {
            eprintln!(
                "{username} disabled; {} session(s) ended, {} token(s) revoked",
                ended.sessions_ended, ended.tokens_revoked
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            eprintln!("{username} enabled");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("control: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn serve(state: AppState) -> anyhow::Result<ExitCode> {
    first_run_admin(&state).await?;
    let listen = state.config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
    tracing::info!(
        node = %state.config.server.node_id,
        listen = %listener.local_addr()?,
        database = ?state.db.backend,
        "control started"
    );
    // Media before traffic: a taken media port fails start-up, not the
    // first call.
    state.nodes.start().await?;
    eprintln!(
        "Enclave is at http://{}/ (the web client; sign in there)",
        listener.local_addr()?
    );
    let nodes = state.nodes.clone();
    let served = control::run(listener, state, wait_for_signal()).await;
    nodes.stop().await;
    served?;
    tracing::info!("control stopped");
    Ok(ExitCode::SUCCESS)
}

/// With no user at all, creates `admin` and prints its password once.
async fn first_run_admin(state: &AppState) -> anyhow::Result<()> {
    if users::count(&state.db).await? > 0 {
        return Ok(());
    }
    let pw = password::generate();
    match control::api::users::create_local_user(
        state,
        "admin",
        &pw,
        None,
        "Administrator",
        SystemRole::Admin,
    )
    .await
    {
        Ok(u) => {
            control::audit::record(
                "user_create",
                &control::audit::Actor {
                    user_id: &u.id,
                    username: "first-run",
                    ip: "local",
                },
                "success",
                "first-run system admin",
            );
            eprintln!("first run: created the system admin \"admin\" with password: {pw}");
            eprintln!("  (shown once; log in and change it)");
        }
        // Another node won the race.
        Err(control::AppError::Conflict(_)) => {}
        Err(e) => return Err(anyhow::anyhow!("creating the first admin: {e}")),
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
}
