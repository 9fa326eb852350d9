//! One worker thread: a UDP socket of the shared port, the calls placed on
//! it (one `Sfu`), and a mailbox. No lock is taken per packet.
//!
//! With several workers the kernel spreads datagrams over their sockets by
//! address hash, so a datagram may land on a worker that does not own its
//! session. A STUN packet names its worker in the ICE ufrag; the receiving
//! worker forwards it there and remembers the address, so later packets of
//! that path follow without a lookup in shared state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};
use rtcd_core::{
    CoreError, CoreStats, Datagram, Output, Protocol, Sfu, WhepRequest, WhipAnswer, is_stun,
    stun_username_ufrag, ufrag_worker,
};
use rtcd_udp::{MediaSocket, RecvBuffers, SendQueue, SocketCounters};
use signaling::media::IceCandidate;
use signaling::rtcd::{CloseReason, FromRtcd, ToRtcd};
use signaling::{CallId, SessionId};
use tokio::sync::oneshot;

use crate::audio_release::AudioRelease;
use crate::clock;
use crate::tcp::TcpRegistry;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Longest sleep, so snapshots stay fresh on an idle node.
const MAX_SLEEP: Duration = Duration::from_millis(250);
const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);
/// Receive batches handled before the worker turns to its mailbox and
/// timers (each batch is up to `rtcd_udp::RECV_BATCH` datagrams).
const MAX_BATCHES_PER_TURN: usize = 8;
/// Video fan-out writes in one turn before the worker turns to its mailbox
/// and timers; what is left goes on in the next turn, which does not sleep.
const FANOUT_WRITES_PER_TURN: usize = 8192;
/// A worker whose oldest waiting video packet is this old stops reading
/// until its fan-out catches up: one that cannot keep up leaves the excess
/// to the kernel's receive buffer, as it did before video waited in rtcd,
/// rather than queueing video without bound.
const MAX_VIDEO_WAIT: Duration = Duration::from_millis(100);
/// Mailbox capacity; a full mailbox drops steered datagrams (counted) and
/// refuses commands with a clear error rather than growing without bound.
pub const MAILBOX: usize = 16_384;
/// Most remembered foreign paths before the map is cleared and relearned.
const FOREIGN_PATHS: usize = 100_000;

pub type Reply<T> = oneshot::Sender<Result<T, CoreError>>;

pub enum WorkerMsg {
    Command(ToRtcd),
    Whip {
        call: CallId,
        offer: String,
        reply: Reply<WhipAnswer>,
    },
    Whep {
        req: WhepRequest,
        reply: Reply<WhipAnswer>,
    },
    Candidate {
        session: SessionId,
        candidate: IceCandidate,
        reply: Reply<()>,
    },
    Remove {
        session: SessionId,
        reply: Reply<()>,
    },
    /// A datagram that arrived on another worker's socket or over ICE-TCP.
    Datagram {
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// Close everything (drain deadline) and stop.
    Shutdown,
}

/// What the rest of the process may know about a worker, refreshed twice
/// a second.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub core: CoreStats,
    pub socket: Option<SocketCounters>,
    pub cpu: Duration,
    /// Share of the last interval spent working, 0.0..=1.0.
    pub busy: f32,
    pub steered_out: u64,
    pub mailbox_full: u64,
    pub tcp_dropped: u64,
    pub alive: bool,
}

#[derive(Clone)]
pub struct WorkerHandle {
    tx: SyncSender<WorkerMsg>,
    waker: Arc<Waker>,
    pub snapshot: Arc<Mutex<Snapshot>>,
}

impl WorkerHandle {
    pub fn send(&self, msg: WorkerMsg) -> Result<(), WorkerMsg> {
        match self.tx.try_send(msg) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => Err(m),
        }
    }
}

pub struct Worker {
    index: usize,
    sfu: Sfu,
    /// Subscriber writes per slice of a video fan-out (`rtc.fanout_slice`).
    fanout_slice: usize,
    audio_release: AudioRelease,
    socket: MediaSocket,
    poll: Poll,
    rx: Receiver<WorkerMsg>,
    peers: Vec<WorkerHandle>,
    tcp: Arc<TcpRegistry>,
    events: tokio::sync::mpsc::Sender<FromRtcd>,
    snapshot: Arc<Mutex<Snapshot>>,
    foreign: HashMap<SocketAddr, usize>,
    steered_out: u64,
    mailbox_full: u64,
    tcp_dropped: u64,
    events_dropped: u64,
}

/// Builds a worker and its handle; `start` runs it on a thread once every
/// handle exists (workers steer to each other).
pub fn prepare(
    index: usize,
    sfu: Sfu,
    fanout_slice: usize,
    mut socket: MediaSocket,
    tcp: Arc<TcpRegistry>,
    events: tokio::sync::mpsc::Sender<FromRtcd>,
) -> std::io::Result<(Worker, WorkerHandle)> {
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = std::sync::mpsc::sync_channel(MAILBOX);
    let snapshot = Arc::new(Mutex::new(Snapshot {
        alive: true,
        ..Default::default()
    }));
    let handle = WorkerHandle {
        tx,
        waker,
        snapshot: snapshot.clone(),
    };
    Ok((
        Worker {
            index,
            sfu,
            fanout_slice: fanout_slice.max(1),
            audio_release: AudioRelease::new(clock::now()),
            socket,
            poll,
            rx,
            peers: Vec::new(),
            tcp,
            events,
            snapshot,
            foreign: HashMap::new(),
            steered_out: 0,
            mailbox_full: 0,
            tcp_dropped: 0,
            events_dropped: 0,
        },
        handle,
    ))
}

impl Worker {
    pub fn start(mut self, peers: Vec<WorkerHandle>) -> std::thread::JoinHandle<()> {
        self.peers = peers;
        std::thread::Builder::new()
            .name(format!("rtcd-worker-{}", self.index))
            .spawn(move || self.run())
            .expect("spawning a worker thread")
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut bufs = RecvBuffers::new();
        let mut queue = SendQueue::new();
        let mut writable_interest = false;
        let mut last_snapshot = clock::now();
        let mut cpu_at_snapshot = clock::thread_cpu();
        let mut stopping = false;
        // Set when the last turn stopped reading with datagrams still queued.
        let mut backlog = false;
        loop {
            let now = clock::now();
            if !backlog && self.sfu.video_backlog() == 0 {
                self.audio_release.caught_up(now);
            }
            let sleep = self
                .sfu
                .poll_timeout()
                .map_or(MAX_SLEEP, |t| t.saturating_duration_since(now))
                .min(MAX_SLEEP);
            let sleep = if backlog { Duration::ZERO } else { sleep };
            if let Err(e) = self.poll.poll(&mut events, Some(sleep))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!(worker = self.index, error = %e, "poll failed");
                break;
            }
            // Receive in batches of up to RECV_BATCH datagrams, up to
            // MAX_BATCHES_PER_TURN of them. The audio they carry is written
            // to subscribers at once and released once, after the last
            // batch: str0m's timeout pass costs per subscriber, not per
            // packet, so one pass per turn instead of one per batch saves
            // the most when the worker is busiest, at the price of holding
            // a turn's first packets until its last batch is handled. Their
            // video follows, in slices (`fan_out_video`).
            backlog = false;
            for turn in 0.. {
                if turn == MAX_BATCHES_PER_TURN {
                    // Leave the rest for the next turn so that control
                    // messages, timers and snapshots are not starved.
                    backlog = true;
                    break;
                }
                if self.behind() {
                    backlog = true;
                    break;
                }
                let got = self.receive_batch(&mut bufs);
                self.flush_outputs(&mut queue);
                if got == 0 {
                    break;
                }
            }
            self.sfu.flush(clock::now());
            self.flush_outputs(&mut queue);
            self.fan_out_video(&mut bufs, &mut queue);
            // Datagrams steered here by other workers are released together
            // too, by the timeout pass below; their video waits for the
            // next turn's slices, which begins without sleeping.
            while let Ok(msg) = self.rx.try_recv() {
                if matches!(msg, WorkerMsg::Shutdown) {
                    stopping = true;
                    self.sfu.close_all(clock::now(), CloseReason::Drained);
                } else {
                    self.handle_msg(msg);
                }
                self.flush_outputs(&mut queue);
            }
            self.sfu.handle_timeout(clock::now());
            self.flush_outputs(&mut queue);
            let blocked = matches!(
                self.socket.flush(&mut queue),
                rtcd_udp::FlushStatus::Blocked
            );
            if blocked != writable_interest {
                let interest = if blocked {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if self
                    .poll
                    .registry()
                    .reregister(&mut self.socket, SOCKET, interest)
                    .is_ok()
                {
                    writable_interest = blocked;
                }
            }
            let now = clock::now();
            if now.saturating_duration_since(last_snapshot) >= SNAPSHOT_EVERY || stopping {
                let cpu = clock::thread_cpu();
                let busy = (cpu.saturating_sub(cpu_at_snapshot)).as_secs_f32()
                    / now
                        .saturating_duration_since(last_snapshot)
                        .as_secs_f32()
                        .max(1e-6);
                self.publish(cpu, busy.min(1.0), !stopping);
                last_snapshot = now;
                cpu_at_snapshot = cpu;
            }
            if stopping {
                let _ = self.socket.flush(&mut queue);
                break;
            }
        }
    }

    /// Reads one batch from the socket and feeds it to the core (or to the
    /// worker that owns it). Returns how many datagrams were read.
    fn receive_batch(&mut self, bufs: &mut RecvBuffers) -> usize {
        let now = clock::now();
        let mut got = 0;
        let sfu = &mut self.sfu;
        let foreign = &mut self.foreign;
        let peers = &self.peers;
        let me = self.index;
        let mut steered = 0u64;
        let mut full = 0u64;
        let r = self.socket.recv_batch(bufs, |d| {
            got += 1;
            match steer(me, peers.len(), foreign, d.source, d.contents) {
                None => {
                    let _ = sfu.handle_datagram(
                        now,
                        Datagram {
                            proto: Protocol::Udp,
                            source: d.source,
                            destination: d.destination,
                            contents: d.contents,
                        },
                    );
                }
                Some(w) => {
                    let msg = WorkerMsg::Datagram {
                        proto: Protocol::Udp,
                        source: d.source,
                        destination: d.destination,
                        contents: d.contents.to_vec(),
                    };
                    match peers[w].send(msg) {
                        Ok(()) => steered += 1,
                        Err(_) => full += 1,
                    }
                }
            }
        });
        self.steered_out += steered;
        self.mailbox_full += full;
        if let Err(e) = r {
            tracing::debug!(worker = self.index, error = %e, "receive error");
        }
        got
    }

    /// The video fan-out lags so far that reading more would only queue
    /// more.
    fn behind(&self) -> bool {
        self.sfu
            .video_waiting_since()
            .is_some_and(|t| clock::now().saturating_duration_since(t) >= MAX_VIDEO_WAIT)
    }

    /// Fans out the video the core holds, a slice of subscriber writes at
    /// a time. Between slices it reads the socket again: audio that came
    /// in meanwhile is forwarded at once (the core does that) and released
    /// and sent here, before the rest of the video, unless the worker is
    /// saturated and the audio can wait (`audio_release`). Video written
    /// so far is released with it, or after the last slice; a flush per
    /// slice would cost every subscriber a str0m timeout pass per packet.
    fn fan_out_video(&mut self, bufs: &mut RecvBuffers, queue: &mut SendQueue) {
        if self.sfu.video_backlog() == 0 {
            return;
        }
        // The audio of the batches just read goes out before any video.
        let _ = self.socket.flush(queue);
        let mut writes = 0;
        while writes < FANOUT_WRITES_PER_TURN {
            let more = self.sfu.forward_backlog(clock::now(), self.fanout_slice);
            writes += self.fanout_slice;
            self.flush_outputs(queue);
            if !more {
                break;
            }
            if !self.behind() && self.receive_batch(bufs) > 0 {
                let now = clock::now();
                if self
                    .audio_release
                    .due(now, self.sfu.audio_unflushed_since())
                {
                    self.sfu.flush(now);
                }
                self.flush_outputs(queue);
                let _ = self.socket.flush(queue);
            }
        }
        self.sfu.flush(clock::now());
        self.flush_outputs(queue);
    }

    fn publish(&self, cpu: Duration, busy: f32, alive: bool) {
        if let Ok(mut s) = self.snapshot.lock() {
            s.core = self.sfu.stats().clone();
            s.socket = Some(self.socket.counters());
            s.cpu = cpu;
            s.busy = busy;
            s.steered_out = self.steered_out;
            s.mailbox_full = self.mailbox_full;
            s.tcp_dropped = self.tcp_dropped;
            s.alive = alive;
        }
    }

    fn handle_msg(&mut self, msg: WorkerMsg) {
        let now = clock::now();
        match msg {
            WorkerMsg::Command(cmd) => self.sfu.handle_command(now, cmd),
            WorkerMsg::Whip { call, offer, reply } => {
                let _ = reply.send(self.sfu.whip(now, &call, &offer));
            }
            WorkerMsg::Whep { req, reply } => {
                let _ = reply.send(self.sfu.whep(now, req));
            }
            WorkerMsg::Candidate {
                session,
                candidate,
                reply,
            } => {
                let _ = reply.send(self.sfu.add_remote_candidate(now, &session, &candidate));
            }
            WorkerMsg::Remove { session, reply } => {
                let _ = reply.send(self.sfu.remove_session(now, &session, CloseReason::Removed));
            }
            WorkerMsg::Datagram {
                proto,
                source,
                destination,
                contents,
            } => {
                let _ = self.sfu.handle_datagram(
                    now,
                    Datagram {
                        proto,
                        source,
                        destination,
                        contents: &contents,
                    },
                );
            }
            WorkerMsg::Shutdown => {}
        }
    }

    fn flush_outputs(&mut self, queue: &mut SendQueue) {
        while let Some(out) = self.sfu.poll_output() {
            match out {
                Output::Transmit(t) => match t.proto {
                    Protocol::Udp => {
                        queue.push(t.destination, Some(t.source.ip()), &t.contents);
                        if queue.len() >= rtcd_udp::RECV_BATCH * 4 {
                            let _ = self.socket.flush(queue);
                        }
                    }
                    Protocol::Tcp => {
                        if !self.tcp.send(t.destination, &t.contents) {
                            self.tcp_dropped += 1;
                        }
                    }
                },
                Output::Event(e) => {
                    if self.events.try_send(e).is_err() {
                        self.events_dropped += 1;
                        tracing::warn!(
                            worker = self.index,
                            "control event queue full; event dropped"
                        );
                    }
                }
            }
        }
    }
}

/// Which other worker, if any, owns this datagram's path.
fn steer(
    me: usize,
    workers: usize,
    foreign: &mut HashMap<SocketAddr, usize>,
    source: SocketAddr,
    contents: &[u8],
) -> Option<usize> {
    if workers <= 1 {
        return None;
    }
    if is_stun(contents) {
        let owner = stun_username_ufrag(contents)
            .and_then(ufrag_worker)
            .map(usize::from)
            .filter(|w| *w < workers);
        return match owner {
            Some(w) if w != me => {
                if foreign.len() >= FOREIGN_PATHS {
                    foreign.clear();
                }
                foreign.insert(source, w);
                Some(w)
            }
            _ => {
                foreign.remove(&source);
                None
            }
        };
    }
    foreign.get(&source).copied()
}
