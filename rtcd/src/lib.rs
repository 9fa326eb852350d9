//! rtcd, the Enclave SFU process: binds the media port (UDP, and ICE-TCP on
//! the same number), runs one worker thread per core with the sans-IO core
//! (`rtcd-core`) on each, and serves the control API, WHIP/WHEP and
//! operations endpoints over HTTP.
//!
//! Embed it with [`Rtcd::start`] (control does, for its one-command
//! default) or run the `rtcd` binary. Shutdown is two-phase:
//! [`Rtcd::drain`] stops new calls and flips `/readyz`, running calls go on
//! until they end or the deadline passes, then [`Rtcd::stop`] closes what
//! is left.

pub mod addrs;
mod audio_release;
pub mod auth;
pub mod clock;
pub mod config;
mod control_api;
mod http;
mod metrics;
pub mod node;
mod tcp;
mod whip;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use rtcd_core::{CoreConfig, NatMapping, Sfu};
use rtcd_udp::{MediaSocket, UdpConfig};

pub use config::Config;
use node::Node;
use tcp::TcpRegistry;
use worker::WorkerMsg;

/// How often drain checks whether the last call has ended.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// A running rtcd.
pub struct Rtcd {
    pub node: Arc<Node>,
    /// The media port's local address (UDP; ICE-TCP uses the same number).
    pub media_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub advertised: Vec<SocketAddr>,
    threads: Vec<std::thread::JoinHandle<()>>,
    http: tokio::task::JoinHandle<()>,
    http_stop: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Rtcd {
    /// Binds every socket and starts the workers. Must run inside a tokio
    /// runtime (the HTTP server and ICE-TCP live on it).
    pub async fn start(config: Config) -> anyhow::Result<Rtcd> {
        let config = Arc::new(config);
        let n = config.worker_count();
        let bind = SocketAddr::new(config.rtc.bind_ip, config.rtc.port);
        let mut udp = UdpConfig::new(bind);
        udp.batching = config.rtc.batching;
        udp.reuse_address = false;
        udp.reuse_port = n > 1;
        udp.recv_buffer_size = config.rtc.socket_buffer_bytes;
        udp.send_buffer_size = config.rtc.socket_buffer_bytes;
        // ICE-TCP takes the same port number as UDP. With port 0 the
        // kernel picks a UDP port whose TCP twin may be in use (another
        // socket's ephemeral port): pick again a few times before failing.
        let attempts = if config.rtc.port == 0 { 8 } else { 1 };
        let mut attempt = 0;
        let (sockets, tcp_listener) = loop {
            attempt += 1;
            let sockets = MediaSocket::bind_group(&udp, n)
                .with_context(|| format!("binding the media port {bind} (UDP)"))?;
            if !config.rtc.ice_tcp {
                break (sockets, None);
            }
            let addr = SocketAddr::new(config.rtc.bind_ip, sockets[0].local_addr().port());
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break (sockets, Some(l)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < attempts => {
                    continue;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("binding ICE-TCP on {addr}")));
                }
            }
        };
        let media_addr = sockets[0].local_addr();
        let ips = addrs::advertised(&config)?;
        let advertised: Vec<SocketAddr> = ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, media_addr.port()))
            .collect();
        let nat: Vec<NatMapping> = config
            .rtc
            .nat
            .iter()
            .filter_map(|n| config::parse_nat(n).ok())
            .collect();

        let cert = rtcd_core::generate_dtls_cert();
        let tcp = Arc::new(TcpRegistry::default());
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(100_000);
        let mut prepared = Vec::new();
        let mut handles = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let mut core = CoreConfig::new(cert.clone());
            core.worker = i as u8;
            core.udp_candidates = advertised.clone();
            if tcp_listener.is_some() {
                core.tcp_candidates = advertised.clone();
            }
            core.nat = nat.clone();
            core.max_sessions = config.rtc.max_sessions_per_worker;
            core.connect_timeout = Duration::from_secs(config.rtc.connect_timeout_secs);
            core.disconnect_timeout = Duration::from_secs(config.rtc.disconnect_timeout_secs);
            core.resend_window = Duration::from_millis(config.rtc.resend_window_ms);
            core.resend_window_min = Duration::from_millis(config.rtc.resend_window_min_ms);
            core.resend_window_packets = config.rtc.resend_window_packets;
            let (w, h) = worker::prepare(
                i,
                Sfu::new(core),
                config.rtc.fanout_slice,
                socket,
                tcp.clone(),
                events_tx.clone(),
            )
            .context("starting a worker")?;
            prepared.push(w);
            handles.push(h);
        }
        let threads = prepared
            .into_iter()
            .map(|w| w.start(handles.clone()))
            .collect();
        let node = Arc::new(Node::new(
            config.clone(),
            handles.clone(),
            tcp.clone(),
            media_addr.port(),
        ));
        let mut background = vec![tokio::spawn(node.clone().route_events(events_rx))];
        if let Some(listener) = tcp_listener {
            background.push(tokio::spawn(tcp::serve(listener, tcp, handles)));
        }

        let api = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("binding the API on {}", config.api.listen))?;
        let api_addr = api.local_addr()?;
        let (http_stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let app = http::router(node.clone());
        let http = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            // Signaling is small messages, often several in a row (an
            // answer, then an offer): with Nagle's algorithm a message
            // waits for the peer's delayed ACK, ~40 ms on Linux.
            let api = api.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(api, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(
            node = %config.node_id,
            media = %media_addr,
            api = %api_addr,
            workers = n,
            advertised = ?advertised,
            ice_tcp = config.rtc.ice_tcp,
            "rtcd started"
        );
        Ok(Rtcd {
            node,
            media_addr,
            api_addr,
            advertised,
            threads,
            http,
            http_stop,
            background,
        })
    }

    /// Stops taking new calls (`/readyz` turns 503) and waits until running
    /// calls end or `deadline` passes. Returns the calls still running.
    /// The deadline goes into the load reports, so control moves the
    /// calls elsewhere before it passes and the node empties early.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.node.start_drain_until(clock::now() + deadline);
        let until = tokio::time::Instant::now() + deadline;
        tracing::info!(calls = self.node.call_count(), ?deadline, "draining");
        while self.node.call_count() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        self.node.call_count()
    }

    /// Closes every remaining session and stops all threads and servers.
    pub async fn stop(self) {
        for w in &self.node.workers {
            let mut msg = WorkerMsg::Shutdown;
            // A full mailbox empties quickly; keep trying briefly.
            for _ in 0..50 {
                match w.send(msg) {
                    Ok(()) => break,
                    Err(m) => {
                        msg = m;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // Let the last events (sessions closed) reach control.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.node.close_conns();
        let _ = self.http_stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http).await;
        for b in self.background {
            b.abort();
        }
    }
}
