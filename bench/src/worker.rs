//! A generator thread: many simulated participants (str0m `Rtc` clients in
//! RTP mode) multiplexed on one epoll loop.
//!
//! Each participant has its own UDP socket on 127.0.0.1 (the SFU tells
//! sessions apart by remote address), registered level-triggered with the
//! socket's slot number as the epoll token: demultiplexing is one array
//! index. A readable socket is drained with one `recvmmsg`; what a
//! participant sends leaves through its `SendQueue` (GSO bursts for video
//! frames). One binary heap of deadlines wakes only the participants whose
//! str0m timer or next media frame is due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rtcd_udp::{MediaSocket, RecvBuffers, SendQueue, UdpConfig};
use signaling::media::TrackDeclaration;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc::UnboundedSender;

use crate::media::{Packet, SendTrack, TrackSpec};
use crate::pacer::Pacer;
use crate::payload::{self, KernelTime, SeqTracker, clock, ns_since_epoch};

const WAKE_TOKEN: u64 = u64::MAX;
const MAX_EVENTS: usize = 256;
const MAX_SLEEP: Duration = Duration::from_millis(100);
const INTERVAL: Duration = Duration::from_secs(1);

/// What a participant does on joining.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub pid: u32,
    pub sends: Vec<TrackSpec>,
    /// Receive-only m-lines (a WHEP player's offer).
    pub recv_only: Vec<MediaKind>,
    /// Send-only m-lines with nothing on them: what the web client offers
    /// before its microphone, camera or screen is on (a listener's offer).
    pub silent_sends: Vec<MediaKind>,
    /// Offer a data channel.
    pub data_channel: bool,
    /// Decrypt only the first packet of each incoming stream; count the
    /// rest by their RTP header (sequence numbers travel in the clear).
    /// ICE, DTLS and RTCP still go through str0m. Keeps listeners cheap so
    /// one generator core can drive many of them.
    pub light: bool,
    /// Make no offer: the SFU offers first (a Janus subscriber).
    pub answer_only: bool,
    /// Video leaves through a pacer, as a browser sends it (see [`crate::pacer`]);
    /// otherwise each frame leaves as one burst.
    pub paced: bool,
}

pub enum Cmd {
    Join(JoinSpec),
    /// The SFU's answer to the participant's offer.
    Answer {
        pid: u32,
        sdp: String,
    },
    /// The SFU renegotiates.
    Offer {
        pid: u32,
        sdp: String,
        negotiation: u64,
    },
    Leave {
        pid: u32,
    },
    Report(Sender<WorkerReport>),
    Stop,
}

/// What a worker tells the orchestrator.
#[derive(Debug)]
pub enum Note {
    Offer {
        pid: u32,
        sdp: String,
        tracks: Vec<TrackDeclaration>,
    },
    Answer {
        pid: u32,
        sdp: String,
        negotiation: u64,
    },
    Connected {
        pid: u32,
        at: Instant,
    },
    FirstMedia {
        pid: u32,
        at: Instant,
    },
    Failed {
        pid: u32,
        error: String,
    },
}

/// One second of a worker's delay measurements.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct IntervalSample {
    /// End of the interval, seconds since the epoch.
    pub t: f64,
    pub packets: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Counters the main thread samples while the worker runs.
#[derive(Default)]
pub struct Shared {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Measurement window in ns since the epoch; packets sent inside it count.
    pub window_start: AtomicU64,
    pub window_end: AtomicU64,
    pub tid: AtomicI32,
    pub intervals: Mutex<Vec<IntervalSample>>,
}

#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    pub sender: u32,
    pub track: u8,
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub window_received: u64,
    pub window_lost: u64,
}

#[derive(Debug, Clone)]
pub struct ClientReport {
    pub pid: u32,
    pub connected: Option<Instant>,
    pub first_media: Option<Instant>,
    pub failed: Option<String>,
    pub streams: Vec<StreamReport>,
    /// Where its negotiation and ICE stand, for diagnosing a stuck join.
    pub state: String,
    /// Keyframe requests this receiver sent because a video m-line stayed
    /// empty (as a browser does); the SFU should not need them.
    pub plis_sent: u32,
}

pub struct WorkerReport {
    /// One-way delay (ns) of packets sent inside the window, all kinds.
    pub delay: Histogram<u64>,
    pub delay_audio: Histogram<u64>,
    pub delay_video: Histogram<u64>,
    /// How late timers fired (µs): a saturated generator shows here.
    pub timer_late_us: Histogram<u64>,
    pub clients: Vec<ClientReport>,
}

pub fn delay_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds")
}

pub struct WorkerHandle {
    tx: Sender<Cmd>,
    wake: Arc<OwnedFd>,
    pub shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WorkerHandle {
    pub fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            wake(self.wake.as_raw_fd());
        }
    }

    pub fn report(&self) -> Option<WorkerReport> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(Cmd::Report(tx));
        rx.recv_timeout(Duration::from_secs(30)).ok()
    }

    /// Stops the thread and waits for it.
    pub fn stop(&self) {
        self.send(Cmd::Stop);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

fn wake(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a live u64 to an eventfd we own.
    unsafe {
        libc::write(fd, (&one as *const u64).cast(), 8);
    }
}

/// Starts a generator thread.
pub fn spawn(
    index: usize,
    notes: UnboundedSender<Note>,
    socket_buffer: usize,
) -> anyhow::Result<WorkerHandle> {
    // SAFETY: plain syscalls; the returned descriptors are owned below.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    anyhow::ensure!(
        ep >= 0,
        "epoll_create1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `ep` is a fresh descriptor nobody else owns.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    // SAFETY: as above.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    anyhow::ensure!(efd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: `efd` is a fresh descriptor nobody else owns.
    let efd = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    epoll_add(
        ep.as_raw_fd(),
        efd.as_raw_fd(),
        WAKE_TOKEN,
        libc::EPOLLIN as u32,
    )?;
    let (tx, rx) = std::sync::mpsc::channel();
    // No window until the orchestrator opens one: setup traffic never counts.
    let shared = Arc::new(Shared {
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(u64::MAX),
        ..Default::default()
    });
    let mut worker = Worker {
        ep,
        wake: efd.clone(),
        rx,
        notes,
        shared: shared.clone(),
        clients: Vec::new(),
        by_pid: HashMap::new(),
        timers: BinaryHeap::new(),
        cert: rtcd_core::generate_dtls_cert(),
        socket_buffer,
        ctx: Ctx::new(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("bench-gen-{index}"))
        .spawn(move || worker.run())?;
    Ok(WorkerHandle {
        tx,
        wake: efd,
        shared,
        thread: Mutex::new(Some(thread)),
    })
}

fn epoll_add(ep: RawFd, fd: RawFd, token: u64, events: u32) -> anyhow::Result<()> {
    epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, token, events)
}

fn epoll_ctl(ep: RawFd, op: i32, fd: RawFd, token: u64, events: u32) -> anyhow::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` lives across the call; the descriptors are ours.
    let rc = unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) };
    anyhow::ensure!(rc == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    Ok(())
}

/// Worker-wide measurement state, borrowed next to one client.
struct Ctx {
    notes_out: Vec<Note>,
    delay: Histogram<u64>,
    delay_audio: Histogram<u64>,
    delay_video: Histogram<u64>,
    interval: Histogram<u64>,
    timer_late_us: Histogram<u64>,
    win_start: u64,
    win_end: u64,
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    scratch: Vec<Packet>,
    kernel_time: KernelTime,
}

impl Ctx {
    fn new() -> Self {
        Ctx {
            notes_out: Vec::new(),
            delay: delay_histogram(),
            delay_audio: delay_histogram(),
            delay_video: delay_histogram(),
            interval: delay_histogram(),
            timer_late_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            win_start: u64::MAX,
            win_end: u64::MAX,
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            kernel_time: KernelTime::new(),
            scratch: Vec::new(),
        }
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.win_start && sent_ns < self.win_end
    }
}

/// A stream a light receiver counts by RTP header.
struct LightStream {
    key: u64,
    last_seq: u16,
    ext: u64,
    all: SeqTracker,
    window: SeqTracker,
}

struct RxStream {
    layer: u8,
    all: SeqTracker,
    window: SeqTracker,
}

/// A participant's str0m side, apart from its socket (so a receive
/// callback can borrow both).
struct Client {
    pid: u32,
    rtc: Rtc,
    queue: SendQueue,
    pending: Option<SdpPendingOffer>,
    sends: Vec<(SendTrack, Option<Mid>, Option<Pt>)>,
    rx: HashMap<u64, RxStream>,
    connected: Option<Instant>,
    first_media: Option<Instant>,
    failed: Option<String>,
    rtc_deadline: Instant,
    scheduled: Option<Instant>,
    blocked: bool,
    audio_pt: Option<Pt>,
    answers: u32,
    offers: u32,
    ice: Option<str0m::IceConnectionState>,
    light: bool,
    light_streams: HashMap<u32, LightStream>,
    /// Received video m-lines: (mid, added, last PLI we sent, any packet yet).
    video_in: Vec<(Mid, Instant, Option<Instant>, bool)>,
    ssrc_mid: HashMap<u32, Mid>,
    plis_sent: u32,
    /// Video waiting for its turn (track index, packet); `None` when the
    /// participant sends frames as bursts or sends no video.
    pacer: Option<Pacer<(usize, Packet)>>,
}

struct Slot {
    socket: MediaSocket,
    client: Client,
}

struct Worker {
    ep: OwnedFd,
    wake: Arc<OwnedFd>,
    rx: Receiver<Cmd>,
    notes: UnboundedSender<Note>,
    shared: Arc<Shared>,
    clients: Vec<Option<Slot>>,
    by_pid: HashMap<u32, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    cert: str0m::config::DtlsCert,
    socket_buffer: usize,
    ctx: Ctx,
}

impl Worker {
    fn run(&mut self) {
        // SAFETY: gettid has no preconditions.
        self.shared
            .tid
            .store(unsafe { libc::gettid() }, Ordering::Relaxed);
        let mut bufs = RecvBuffers::new();
        let mut events: Vec<libc::epoll_event> =
            vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        let mut next_interval = clock() + INTERVAL;
        // epoll_pwait2 is Linux 5.11 and later; before it, milliseconds.
        let mut fine_timeout = true;
        loop {
            self.ctx.win_start = self.shared.window_start.load(Ordering::Relaxed);
            self.ctx.win_end = self.shared.window_end.load(Ordering::Relaxed);
            let now = clock();
            self.fire_timers(now);
            let now = clock();
            let sleep = self
                .timers
                .peek()
                .map_or(MAX_SLEEP, |Reverse((t, _))| {
                    t.saturating_duration_since(now)
                })
                .min(MAX_SLEEP)
                .min(next_interval.saturating_duration_since(now));
            // A timeout finer than epoll_wait's milliseconds: rounded up to
            // the next millisecond, every frame due within it would leave
            // together, a clump of all the participants' packets at each
            // millisecond that no set of independent browsers sends.
            let timeout = libc::timespec {
                tv_sec: sleep.as_secs() as libc::time_t,
                tv_nsec: sleep.subsec_nanos() as libc::c_long,
            };
            let (ep, slots) = (self.ep.as_raw_fd(), MAX_EVENTS as i32);
            let n = if fine_timeout {
                // SAFETY: `events` has MAX_EVENTS slots and `timeout` lives
                // across the call; a null signal mask leaves the mask as is.
                unsafe {
                    libc::epoll_pwait2(ep, events.as_mut_ptr(), slots, &timeout, std::ptr::null())
                }
            } else {
                let ms = sleep.as_micros().div_ceil(1000) as i32;
                // SAFETY: `events` has MAX_EVENTS slots that outlive the call.
                unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), slots, ms) }
            };
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                fine_timeout = false;
                continue;
            }
            let n = if n < 0 { 0 } else { n as usize };
            let mut stop = false;
            for ev in &events[..n] {
                let token = ev.u64;
                if token == WAKE_TOKEN {
                    let mut buf = [0u8; 8];
                    // SAFETY: reading 8 bytes into a live buffer from our eventfd.
                    unsafe {
                        libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8);
                    }
                    stop |= self.commands();
                    continue;
                }
                let slot = token as usize;
                if ev.events & (libc::EPOLLIN | libc::EPOLLERR) as u32 != 0 {
                    self.receive(slot, &mut bufs);
                }
                if ev.events & libc::EPOLLOUT as u32 != 0 {
                    self.flush(slot);
                }
            }
            self.publish_notes();
            self.publish_counters();
            if stop {
                break;
            }
            let now = clock();
            if now >= next_interval {
                next_interval = now + INTERVAL;
                self.close_interval(now);
                self.ctx.kernel_time.resync();
            }
        }
        for slot in self.clients.iter_mut().flatten() {
            slot.client.rtc.disconnect();
        }
    }

    fn publish_counters(&mut self) {
        let s = &self.shared;
        s.rx_packets
            .fetch_add(std::mem::take(&mut self.ctx.rx_packets), Ordering::Relaxed);
        s.rx_bytes
            .fetch_add(std::mem::take(&mut self.ctx.rx_bytes), Ordering::Relaxed);
        s.tx_packets
            .fetch_add(std::mem::take(&mut self.ctx.tx_packets), Ordering::Relaxed);
        s.tx_bytes
            .fetch_add(std::mem::take(&mut self.ctx.tx_bytes), Ordering::Relaxed);
    }

    fn close_interval(&mut self, now: Instant) {
        let s = &self.shared;
        let h = &mut self.ctx.interval;
        if !h.is_empty()
            && let Ok(mut v) = s.intervals.lock()
        {
            v.push(IntervalSample {
                t: now
                    .saturating_duration_since(payload::epoch())
                    .as_secs_f64(),
                packets: h.len(),
                p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
                p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
                max_us: h.max() as f64 / 1e3,
            });
        }
        h.reset();
    }

    fn publish_notes(&mut self) {
        for n in self.ctx.notes_out.drain(..) {
            let _ = self.notes.send(n);
        }
    }

    /// Returns true on Stop.
    fn commands(&mut self) -> bool {
        loop {
            let cmd = match self.rx.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            };
            let now = clock();
            match cmd {
                Cmd::Stop => return true,
                Cmd::Join(spec) => {
                    let pid = spec.pid;
                    if let Err(e) = self.join(now, spec) {
                        self.ctx.notes_out.push(Note::Failed {
                            pid,
                            error: format!("{e:#}"),
                        });
                    }
                }
                Cmd::Answer { pid, sdp } => self.with_client(pid, now, |c, ctx| {
                    let answer = SdpAnswer::from_sdp_string(&sdp)?;
                    let pending = c
                        .pending
                        .take()
                        .ok_or_else(|| anyhow::anyhow!("an answer but no offer out"))?;
                    c.rtc.sdp_api().accept_answer(pending, answer)?;
                    c.answers += 1;
                    c.drain(now, ctx);
                    Ok(())
                }),
                Cmd::Offer {
                    pid,
                    sdp,
                    negotiation,
                } => self.with_client(pid, now, |c, ctx| {
                    let offer = SdpOffer::from_sdp_string(&sdp)?;
                    let answer = c.rtc.sdp_api().accept_offer(offer)?;
                    c.offers += 1;
                    ctx.notes_out.push(Note::Answer {
                        pid: c.pid,
                        sdp: answer.to_sdp_string(),
                        negotiation,
                    });
                    c.drain(now, ctx);
                    Ok(())
                }),
                Cmd::Leave { pid } => {
                    if let Some(slot) = self.by_pid.remove(&pid)
                        && let Some(mut s) = self.clients[slot].take()
                    {
                        s.client.rtc.disconnect();
                        let _ = epoll_ctl(
                            self.ep.as_raw_fd(),
                            libc::EPOLL_CTL_DEL,
                            s.socket.as_fd().as_raw_fd(),
                            0,
                            0,
                        );
                    }
                }
                Cmd::Report(tx) => {
                    let _ = tx.send(self.report());
                }
            }
        }
    }

    fn with_client(
        &mut self,
        pid: u32,
        now: Instant,
        f: impl FnOnce(&mut Client, &mut Ctx) -> anyhow::Result<()>,
    ) {
        let Some(&slot) = self.by_pid.get(&pid) else {
            return;
        };
        let Some(s) = self.clients[slot].as_mut() else {
            return;
        };
        if let Err(e) = f(&mut s.client, &mut self.ctx) {
            s.client.failed = Some(format!("{e:#}"));
            self.ctx.notes_out.push(Note::Failed {
                pid,
                error: format!("{e:#}"),
            });
        }
        self.after(slot, now);
    }

    fn join(&mut self, now: Instant, spec: JoinSpec) -> anyhow::Result<()> {
        let mut udp = UdpConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        // Never SO_REUSEADDR: with it, port 0 can hand two participants the
        // same port, and one of them then never connects.
        udp.reuse_address = false;
        udp.recv_buffer_size = self.socket_buffer;
        udp.send_buffer_size = self.socket_buffer;
        let socket = MediaSocket::bind(&udp)?;
        let local = socket.local_addr();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let mut api = rtc.sdp_api();
        let mut tracks = Vec::new();
        let mut sends = Vec::new();
        for (i, t) in spec.sends.iter().enumerate() {
            let rids = t.rids();
            let simulcast = (!rids.is_empty()).then(|| {
                let mut s = Simulcast::new();
                for r in &rids {
                    s.add_send_layer(SimulcastLayer::new(r));
                }
                s
            });
            let mid = api.add_media(
                t.kind(),
                Direction::SendOnly,
                Some(format!("p{}", spec.pid)),
                Some(format!("p{}-{i}", spec.pid)),
                simulcast,
            );
            tracks.push(TrackDeclaration {
                mid: mid.to_string(),
                source: t.source,
            });
            sends.push((
                SendTrack::new(t.clone(), i as u8, spec.pid, now),
                Some(mid),
                None,
            ));
        }
        for kind in &spec.recv_only {
            api.add_media(*kind, Direction::RecvOnly, None, None, None);
        }
        for kind in &spec.silent_sends {
            api.add_media(*kind, Direction::SendOnly, None, None, None);
        }
        if spec.data_channel {
            api.add_channel("bench".into());
        }
        let (offer, pending) = if spec.answer_only {
            (None, None)
        } else {
            let (o, p) = api
                .apply()
                .ok_or_else(|| anyhow::anyhow!("nothing to offer"))?;
            (Some(o), Some(p))
        };
        let video_kbps: u64 = sends
            .iter()
            .filter(|(t, _, _)| t.spec.kind() == MediaKind::Video)
            .flat_map(|(t, _, _)| &t.layers)
            .map(|l| u64::from(l.kbps))
            .sum();
        let pacer = (spec.paced && video_kbps > 0).then(|| Pacer::new(video_kbps));
        let fd = socket.as_fd().as_raw_fd();
        let slot = self.clients.len();
        let max_queue = if spec.sends.is_empty() {
            256 << 10
        } else {
            2 << 20
        };
        self.clients.push(Some(Slot {
            socket,
            client: Client {
                pid: spec.pid,
                rtc,
                queue: SendQueue::with_limits(2048, max_queue),
                pending,
                sends,
                rx: HashMap::new(),
                connected: None,
                first_media: None,
                failed: None,
                rtc_deadline: now,
                scheduled: None,
                blocked: false,
                audio_pt: None,
                answers: 0,
                offers: 0,
                ice: None,
                light: spec.light,
                light_streams: HashMap::new(),
                video_in: Vec::new(),
                ssrc_mid: HashMap::new(),
                plis_sent: 0,
                pacer,
            },
        }));
        self.by_pid.insert(spec.pid, slot);
        epoll_add(self.ep.as_raw_fd(), fd, slot as u64, libc::EPOLLIN as u32)?;
        if let Some(offer) = offer {
            self.ctx.notes_out.push(Note::Offer {
                pid: spec.pid,
                sdp: offer.to_sdp_string(),
                tracks,
            });
        }
        if let Some(s) = self.clients[slot].as_mut() {
            s.client.drain(now, &mut self.ctx);
        }
        self.after(slot, now);
        Ok(())
    }

    fn receive(&mut self, slot: usize, bufs: &mut RecvBuffers) {
        let Some(s) = self.clients.get_mut(slot).and_then(|s| s.as_mut()) else {
            return;
        };
        let ctx = &mut self.ctx;
        let client = &mut s.client;
        let mut at: Option<Instant> = None;
        let _ = s.socket.recv_batch(bufs, |d| {
            let read = *at.get_or_insert_with(clock);
            // Delay is measured to the socket, not to this thread.
            let now = d
                .received_at
                .map_or(read, |t| ctx.kernel_time.to_clock(t, read));
            ctx.rx_packets += 1;
            ctx.rx_bytes += d.contents.len() as u64;
            if client.light && client.count_light(now, d.contents, ctx) {
                return;
            }
            let Ok(contents) = d.contents.try_into() else {
                return;
            };
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: d.source,
                    destination: d.destination,
                    contents,
                },
            );
            if let Err(e) = client.rtc.handle_input(input) {
                tracing::debug!(pid = client.pid, error = %e, "input refused");
            }
            client.drain(now, ctx);
        });
        let now = at.unwrap_or_else(clock);
        self.after(slot, now);
    }

    /// After a client was touched: send what it queued, reschedule it.
    fn after(&mut self, slot: usize, now: Instant) {
        self.flush(slot);
        let Some(s) = self.clients.get_mut(slot).and_then(|s| s.as_mut()) else {
            return;
        };
        let c = &mut s.client;
        let mut at = c.rtc_deadline;
        if c.connected.is_some() {
            for (t, _, _) in &c.sends {
                at = at.min(t.next_at);
            }
            if let Some(ready) = c.pacer.as_ref().and_then(|q| q.ready_at(now)) {
                at = at.min(ready);
            }
        }
        let at = at.max(now);
        if c.scheduled.is_none_or(|s| at < s) {
            c.scheduled = Some(at);
            self.timers.push(Reverse((at, slot)));
        }
    }

    fn flush(&mut self, slot: usize) {
        let Some(s) = self.clients.get_mut(slot).and_then(|s| s.as_mut()) else {
            return;
        };
        if s.client.queue.is_empty() && !s.client.blocked {
            return;
        }
        let blocked = matches!(
            s.socket.flush(&mut s.client.queue),
            rtcd_udp::FlushStatus::Blocked
        );
        if blocked != s.client.blocked {
            let events = if blocked {
                (libc::EPOLLIN | libc::EPOLLOUT) as u32
            } else {
                libc::EPOLLIN as u32
            };
            let _ = epoll_ctl(
                self.ep.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                s.socket.as_fd().as_raw_fd(),
                slot as u64,
                events,
            );
            s.client.blocked = blocked;
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, slot))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(s) = self.clients.get_mut(slot).and_then(|s| s.as_mut()) else {
                continue;
            };
            if s.client.scheduled != Some(at) {
                continue;
            }
            s.client.scheduled = None;
            let late = now.saturating_duration_since(at).as_micros() as u64;
            let _ = self.ctx.timer_late_us.record(late.max(1));
            due.push(slot);
        }
        for slot in due {
            let now = clock();
            if let Some(s) = self.clients.get_mut(slot).and_then(|s| s.as_mut()) {
                s.client.wake(now, &mut self.ctx);
            }
            self.after(slot, now);
        }
        // Stale entries pile up when deadlines move; rebuild when they dominate.
        if self.timers.len() > 4 * self.by_pid.len() + 1024 {
            let live: Vec<_> = self
                .clients
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    s.as_ref()
                        .and_then(|s| s.client.scheduled)
                        .map(|t| Reverse((t, i)))
                })
                .collect();
            self.timers = live.into_iter().collect();
        }
    }

    fn report(&mut self) -> WorkerReport {
        let clients = self
            .clients
            .iter()
            .flatten()
            .map(|s| {
                let c = &s.client;
                let mut streams: Vec<StreamReport> =
                    c.rx.iter()
                        .map(|(k, r)| {
                            let mut s = StreamReport {
                                sender: (k >> 8) as u32,
                                track: (k & 0xff) as u8,
                                received: r.all.received,
                                lost: r.all.lost(),
                                reordered: r.all.reordered,
                                duplicates: r.all.duplicates,
                                window_received: r.window.received,
                                window_lost: r.window.lost(),
                            };
                            for l in c.light_streams.values().filter(|l| l.key == *k) {
                                s.received += l.all.received;
                                s.lost += l.all.lost();
                                s.reordered += l.all.reordered;
                                s.duplicates += l.all.duplicates;
                                s.window_received += l.window.received;
                                s.window_lost += l.window.lost();
                            }
                            s
                        })
                        .collect();
                streams.sort_by_key(|s| (s.sender, s.track));
                ClientReport {
                    pid: c.pid,
                    connected: c.connected,
                    first_media: c.first_media,
                    failed: c.failed.clone(),
                    streams,
                    plis_sent: c.plis_sent,
                    state: format!(
                        "offer out: {}, answers applied: {}, offers answered: {}, ICE: {:?}",
                        c.pending.is_some(),
                        c.answers,
                        c.offers,
                        c.ice
                    ),
                }
            })
            .collect();
        WorkerReport {
            delay: self.ctx.delay.clone(),
            delay_audio: self.ctx.delay_audio.clone(),
            delay_video: self.ctx.delay_video.clone(),
            timer_late_us: self.ctx.timer_late_us.clone(),
            clients,
        }
    }
}

impl Client {
    /// The light path: an SRTP packet of a stream already identified is
    /// counted by its clear RTP header and not decrypted. Returns false
    /// for anything str0m must see (STUN, DTLS, RTCP, a new stream).
    fn count_light(&mut self, now: Instant, buf: &[u8], ctx: &mut Ctx) -> bool {
        if buf.len() < 12 || !(128..=191).contains(&buf[0]) || (64..=95).contains(&(buf[1] & 0x7f))
        {
            return false;
        }
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let Some(l) = self.light_streams.get_mut(&ssrc) else {
            return false;
        };
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let diff = seq.wrapping_sub(l.last_seq) as i16;
        let ext = l.ext.wrapping_add_signed(i64::from(diff));
        if diff > 0 {
            l.last_seq = seq;
            l.ext = ext;
        }
        l.all.observe(ext);
        if ctx.in_window(ns_since_epoch(now)) {
            l.window.observe(ext);
        }
        true
    }

    /// Like a browser, ask for a keyframe when a video m-line has carried
    /// nothing for a while (the SFU forwards a layer from a keyframe on).
    fn ask_for_missing_video(&mut self, now: Instant, ctx: &mut Ctx) {
        let mut asked = false;
        for i in 0..self.video_in.len() {
            let (mid, added, last, got) = self.video_in[i];
            let since = last.unwrap_or(added);
            if got || now.saturating_duration_since(since) < Duration::from_secs(1) {
                continue;
            }
            self.video_in[i].2 = Some(now);
            if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
                rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
                self.plis_sent += 1;
                asked = true;
            }
        }
        if asked {
            self.drain(now, ctx);
        }
    }

    /// Polls str0m until it has nothing more to say.
    fn drain(&mut self, now: Instant, ctx: &mut Ctx) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_deadline = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    ctx.tx_packets += 1;
                    ctx.tx_bytes += t.contents.len() as u64;
                    self.queue.push(t.destination, None, &t.contents);
                }
                Ok(Output::Event(e)) => self.on_event(now, e, ctx),
                Err(e) => {
                    if self.failed.is_none() {
                        self.failed = Some(e.to_string());
                        ctx.notes_out.push(Note::Failed {
                            pid: self.pid,
                            error: e.to_string(),
                        });
                    }
                    // A dead client sleeps until the run ends.
                    self.rtc_deadline = now + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event, ctx: &mut Ctx) {
        match e {
            Event::Connected => {
                if self.connected.is_none() {
                    self.connected = Some(now);
                    ctx.notes_out.push(Note::Connected {
                        pid: self.pid,
                        at: now,
                    });
                }
                self.resolve_pts();
            }
            Event::RtpPacket(p) => {
                let ssrc = *p.header.ssrc;
                if !self.ssrc_mid.contains_key(&ssrc)
                    && let Some(mid) = self
                        .rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|r| r.mid())
                {
                    self.ssrc_mid.insert(ssrc, mid);
                    for v in &mut self.video_in {
                        if v.0 == mid {
                            v.3 = true;
                        }
                    }
                }
                let Some(stamp) = payload::read(&p.payload) else {
                    return;
                };
                if self.first_media.is_none() {
                    self.first_media = Some(now);
                    ctx.notes_out.push(Note::FirstMedia {
                        pid: self.pid,
                        at: now,
                    });
                }
                let audio = self.audio_pt == Some(p.header.payload_type)
                    || (self.audio_pt.is_none() && p.payload[0] == 0xFC);
                let arrived = ns_since_epoch(p.timestamp);
                let in_window = ctx.in_window(stamp.sent_ns);
                if in_window {
                    let d = arrived.saturating_sub(stamp.sent_ns).max(1_000);
                    let _ = ctx.delay.record(d);
                    let _ = ctx.interval.record(d);
                    let _ = if audio {
                        ctx.delay_audio.record(d)
                    } else {
                        ctx.delay_video.record(d)
                    };
                }
                let rx = self
                    .rx
                    .entry(stamp.stream_key())
                    .or_insert_with(|| RxStream {
                        layer: stamp.layer,
                        all: SeqTracker::default(),
                        window: SeqTracker::default(),
                    });
                if rx.layer != stamp.layer {
                    // The SFU switched this receiver to another simulcast layer.
                    rx.layer = stamp.layer;
                    rx.all.restart();
                    rx.window.restart();
                }
                rx.all.observe(stamp.counter);
                if in_window {
                    rx.window.observe(stamp.counter);
                }
                if self.light {
                    self.light_streams
                        .entry(ssrc)
                        .or_insert_with(|| LightStream {
                            key: stamp.stream_key(),
                            last_seq: p.header.sequence_number,
                            // Far from zero so a reordered first packet cannot wrap.
                            ext: 1 << 32,
                            all: SeqTracker::default(),
                            window: SeqTracker::default(),
                        });
                }
            }
            Event::IceConnectionStateChange(s) => self.ice = Some(s),
            Event::MediaAdded(m) if m.kind == MediaKind::Video && m.direction.is_receiving() => {
                self.video_in.push((m.mid, now, None, false));
            }
            Event::KeyframeRequest(r) => {
                for (t, mid, _) in &mut self.sends {
                    if *mid == Some(r.mid) {
                        t.request_keyframe(r.rid);
                    }
                }
            }
            _ => {}
        }
    }

    fn resolve_pts(&mut self) {
        let find = |rtc: &Rtc, codec: Codec| {
            rtc.codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        };
        self.audio_pt = find(&self.rtc, Codec::Opus);
        let video = find(&self.rtc, Codec::Vp8);
        for (t, _, pt) in &mut self.sends {
            *pt = if t.spec.kind() == MediaKind::Audio {
                self.audio_pt
            } else {
                video
            };
        }
    }

    /// A timer fired: str0m's, or a frame is due.
    fn wake(&mut self, now: Instant, ctx: &mut Ctx) {
        if self.failed.is_some() {
            return;
        }
        if now >= self.rtc_deadline {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.failed = Some(e.to_string());
                return;
            }
            self.drain(now, ctx);
        }
        if self.connected.is_none() {
            return;
        }
        self.ask_for_missing_video(now, ctx);
        let mut pkts = std::mem::take(&mut ctx.scratch);
        for ti in 0..self.sends.len() {
            let (track, mid, pt) = &mut self.sends[ti];
            if track.next_at > now || mid.is_none() || pt.is_none() {
                continue;
            }
            track.due(now, self.pid, &mut pkts);
            let video = track.spec.kind() == MediaKind::Video;
            for p in pkts.drain(..) {
                match &mut self.pacer {
                    Some(pacer) if video => {
                        let bytes = p.payload.len();
                        pacer.push((ti, p), bytes);
                    }
                    _ => self.send(ti, p, ctx),
                }
            }
        }
        ctx.scratch = pkts;
        while let Some((ti, p)) = self.pacer.as_mut().and_then(|q| q.pop_due(now)) {
            self.send(ti, p, ctx);
        }
    }

    /// Stamps `p` with the time it leaves and writes it on track `ti`.
    fn send(&mut self, ti: usize, mut p: Packet, ctx: &mut Ctx) {
        let (track, Some(mid), Some(pt)) = &self.sends[ti] else {
            return;
        };
        let (mid, pt) = (*mid, *pt);
        let rid = track.layers.get(p.layer).and_then(|l| l.rid);
        let sent = clock();
        p.stamp.sent_ns = ns_since_epoch(sent);
        payload::write(&mut p.payload, &p.stamp);
        let ext = ExtensionValues {
            audio_level: p.audio_level,
            voice_activity: p.audio_level.map(|l| l > -127),
            ..Default::default()
        };
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, rid) else {
            return;
        };
        tx.write_rtp(
            RtpWrite::new(pt, p.seq.into(), p.ts, sent, p.payload)
                .marker(p.marker)
                .ext_vals(ext)
                .nackable(p.nackable),
        );
        self.drain(sent, ctx);
        // str0m 0.25 releases a written packet only on a timeout
        // (its send queue timestamps packets in handle_timeout);
        // give it one now so the packet leaves with its stamp fresh.
        if self.rtc_deadline <= sent && self.rtc.handle_input(Input::Timeout(sent)).is_ok() {
            self.drain(sent, ctx);
        }
    }
}
