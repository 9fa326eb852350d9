//! The core's state and its inputs and outputs. Media routing lives in
//! `routing` (video waiting for its fan-out in `backlog`), SDP in
//! `negotiation`; `routing` and `negotiation` are `impl Sfu` blocks.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use signaling::media::{IceCandidate, Permissions};
use signaling::rtcd::{CloseReason, ErrorCode, FromRtcd, RtcdError, SessionState, ToRtcd};
use signaling::{CallId, SessionId};
use str0m::change::SdpOffer;
use str0m::ice::IceCreds;
use str0m::media::KeyframeRequestKind;
use str0m::media::Pt;
use str0m::net::{Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc};

use crate::backlog::Backlog;
use crate::call::Call;
use crate::config::CoreConfig;
use crate::demux::{Demux, SessionKey, new_ice_password, new_ufrag};
use crate::fasthash::FastMap;
use crate::negotiation::without_send_side_extensions;
use crate::resend::ResendPolicy;
use crate::session::{Connectivity, Session, SessionKind};
use crate::stats::{CoreStats, DropReason, MediaClass};
use crate::timers::Timers;

/// Largest datagram the core accepts. WebRTC stays under ~1500 bytes on
/// UDP; ICE-TCP frames can be larger but rtcd never needs them to be.
pub const MAX_DATAGRAM: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    fn to_str0m(self) -> str0m::net::Protocol {
        match self {
            Protocol::Udp => str0m::net::Protocol::Udp,
            Protocol::Tcp => str0m::net::Protocol::Tcp,
        }
    }
}

/// A datagram received by the driver. `destination` is the local address
/// it arrived at (needed when sockets are bound to a wildcard address).
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: &'a [u8],
}

/// A datagram to send: from the local `source` (a socket of the driver's)
/// to `destination`.
#[derive(Debug)]
pub struct Transmit {
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

#[derive(Debug)]
pub enum Output {
    Transmit(Transmit),
    /// For control. Errors name the request they answer.
    Event(FromRtcd),
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error("no call {0}")]
    UnknownCall(CallId),
    #[error("no session {0}")]
    UnknownSession(SessionId),
    #[error("{0} is already in use")]
    Conflict(String),
    #[error("invalid SDP: {0}")]
    BadSdp(String),
    #[error("invalid ICE candidate: {0}")]
    BadCandidate(String),
    #[error("limit reached: {0}")]
    Limit(String),
}

impl CoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::UnknownCall(_) => ErrorCode::UnknownCall,
            CoreError::UnknownSession(_) => ErrorCode::UnknownSession,
            CoreError::Conflict(_) => ErrorCode::Conflict,
            CoreError::BadSdp(_) => ErrorCode::BadSdp,
            CoreError::BadCandidate(_) => ErrorCode::BadCandidate,
            CoreError::Limit(_) => ErrorCode::Limit,
        }
    }
}

/// The answer to a WHIP or WHEP offer.
#[derive(Debug, Clone)]
pub struct WhipAnswer {
    pub session_id: SessionId,
    pub sdp: String,
}

/// A WHEP player's offer, optionally naming the publisher to watch (the
/// first publisher in the call otherwise).
#[derive(Debug, Clone)]
pub struct WhepRequest {
    pub call_id: CallId,
    pub publisher: Option<SessionId>,
    pub offer: String,
}

/// One incoming media packet on its way to subscribers.
#[derive(Debug)]
pub(crate) struct Forward {
    pub from: SessionKey,
    pub track: usize,
    pub layer: usize,
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub pt: Pt,
    pub payload: Arc<[u8]>,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub arrival: Instant,
    pub keyframe: bool,
}

/// Work that touches another session than the one being drained. Queued so
/// that every `Rtc` is drained fully before the next one is mutated.
#[derive(Debug)]
pub(crate) enum Action {
    Forward(Forward),
    Keyframe {
        publisher: SessionKey,
        track: usize,
        layer: usize,
        kind: KeyframeRequestKind,
    },
    /// Re-pick the layer of every subscriber of a track.
    Relayer {
        publisher: SessionKey,
        track: usize,
    },
    Renegotiate(SessionKey),
    /// Bind waiting WHEP players of a call to publishers.
    BindPlayers(CallId),
}

pub struct Sfu {
    pub(crate) config: CoreConfig,
    pub(crate) resend: ResendPolicy,
    pub(crate) sessions: FastMap<SessionKey, Session>,
    pub(crate) by_id: HashMap<SessionId, SessionKey>,
    pub(crate) calls: HashMap<CallId, Call>,
    demux: Demux,
    timers: Timers,
    outputs: VecDeque<Output>,
    pub(crate) actions: VecDeque<Action>,
    next_key: SessionKey,
    pub(crate) stats: CoreStats,
    /// Subscribers written to since the last `flush`.
    pub(crate) touched: Vec<SessionKey>,
    /// Subscriber list of the packet being forwarded, kept to reuse its memory.
    pub(crate) fanout_scratch: Vec<(SessionKey, str0m::media::Mid)>,
    /// Packets forwarded since the last `flush`.
    pub(crate) forwarded_since_flush: usize,
    /// Video waiting for [`Sfu::forward_backlog`].
    pub(crate) backlog: Backlog,
    /// When audio was first forwarded since the last `flush`.
    pub(crate) audio_unflushed_since: Option<Instant>,
}

/// Most packets forwarded between two flushes, however many datagrams the
/// driver feeds before it flushes. str0m queues what is written to a
/// subscriber stream until the next flush, in a queue (~400 bytes a packet)
/// that keeps the capacity of its longest run: a 60 KB slide change read in
/// one batch left every screen-share listener a 64-packet queue (26 KB)
/// for good. Flushing every 16 keeps those queues at 16 packets for one
/// timeout per subscriber per 16 packets of a burst.
pub const FLUSH_AFTER_FORWARDS: usize = 16;

impl Sfu {
    pub fn new(config: CoreConfig) -> Self {
        Sfu {
            resend: ResendPolicy::new(config.resend_window_min, config.resend_window),
            config,
            sessions: FastMap::default(),
            by_id: HashMap::new(),
            calls: HashMap::new(),
            demux: Demux::default(),
            timers: Timers::default(),
            outputs: VecDeque::new(),
            actions: VecDeque::new(),
            next_key: 1,
            stats: CoreStats::default(),
            fanout_scratch: Vec::new(),
            touched: Vec::new(),
            forwarded_since_flush: 0,
            backlog: Backlog::default(),
            audio_unflushed_since: None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Sfu::handle_timeout`] must next be called, or, while video
    /// waits for [`Sfu::forward_backlog`], when the oldest waiting packet
    /// arrived: a time already passed, so the driver does not sleep.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.backlog.oldest()) {
            (Some(t), Some(b)) => Some(t.min(b)),
            (t, b) => t.or(b),
        }
    }

    /// Video packets waiting for (or part way through) their fan-out.
    pub fn video_backlog(&self) -> usize {
        self.backlog.len()
    }

    /// When the oldest video packet still waiting for its fan-out arrived:
    /// how far behind the worker's fan-out is.
    pub fn video_waiting_since(&self) -> Option<Instant> {
        self.backlog.oldest()
    }

    /// When the first audio written to subscribers since the last
    /// [`Sfu::flush`] was handled: a driver between two video slices
    /// flushes now rather than after the video, unless it cannot afford
    /// the flush and the audio can wait.
    pub fn audio_unflushed_since(&self) -> Option<Instant> {
        self.audio_unflushed_since
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn has_call(&self, call: &CallId) -> bool {
        self.calls.contains_key(call)
    }

    pub fn has_session(&self, session: &SessionId) -> bool {
        self.by_id.contains_key(session)
    }

    /// Sessions in a call, in join order.
    pub fn sessions_in(&self, call: &CallId) -> Vec<SessionId> {
        self.calls
            .get(call)
            .map(|c| {
                c.sessions
                    .iter()
                    .filter_map(|k| self.sessions.get(k).map(|s| s.id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes sure a session is woken no later than `at`.
    pub(crate) fn schedule_wake(&mut self, key: SessionKey, at: Instant) {
        if let Some(s) = self.sessions.get_mut(&key) {
            self.timers.schedule(key, at, &mut s.scheduled);
        }
    }

    pub(crate) fn register_ufrag(&mut self, ufrag: String, key: SessionKey) {
        self.demux.add_session(ufrag, key);
    }

    pub(crate) fn emit(&mut self, event: FromRtcd) {
        self.outputs.push_back(Output::Event(event));
    }

    // ---------------------------------------------------------------- control

    /// Applies one control message. Refusals come out as
    /// [`FromRtcd::Error`]; `Hello`, `GetLoad` and `ListCalls` belong to the driver and
    /// are ignored here.
    pub fn handle_command(&mut self, now: Instant, msg: ToRtcd) {
        let (result, call_id, session_id, request) = match msg {
            ToRtcd::Hello { .. } | ToRtcd::GetLoad | ToRtcd::ListCalls => return,
            ToRtcd::CreateCall { call_id, request } => {
                self.create_call(call_id.clone());
                (Ok(()), Some(call_id), None, request)
            }
            ToRtcd::EndCall { call_id, request } => {
                let r = self.end_call(now, &call_id);
                (r, Some(call_id), None, request)
            }
            ToRtcd::AddSession {
                call_id,
                session_id,
                permissions,
                request,
            } => {
                let r = self
                    .add_session(now, &call_id, session_id.clone(), permissions)
                    .map(|_| ());
                (r, Some(call_id), Some(session_id), request)
            }
            ToRtcd::RemoveSession {
                session_id,
                request,
            } => {
                let r = self.remove_session(now, &session_id, CloseReason::Removed);
                (r, None, Some(session_id), request)
            }
            ToRtcd::Offer {
                session_id,
                offer,
                tracks,
            } => {
                let r = self.client_offer(now, &session_id, &offer.sdp, &tracks);
                (r, None, Some(session_id), None)
            }
            ToRtcd::Answer { session_id, answer } => {
                let r = self.client_answer(now, &session_id, &answer.sdp, answer.negotiation);
                (r, None, Some(session_id), None)
            }
            ToRtcd::Candidate {
                session_id,
                candidate,
            } => {
                let r = self.add_remote_candidate(now, &session_id, &candidate);
                (r, None, Some(session_id), None)
            }
            ToRtcd::SetMuted { session_id, muted } => {
                let r = self.with_session(&session_id, |s| s.muted = muted);
                (r, None, Some(session_id), None)
            }
            ToRtcd::SetVideo {
                session_id,
                enabled,
            } => {
                let r = self.with_session(&session_id, |s| s.video_enabled = enabled);
                (r, None, Some(session_id), None)
            }
            ToRtcd::SetScreen {
                session_id,
                enabled,
            } => {
                let r = self.with_session(&session_id, |s| s.screen_enabled = enabled);
                (r, None, Some(session_id), None)
            }
            ToRtcd::SetQuality {
                session_id,
                publisher,
                source,
                quality,
            } => {
                let r = self.set_quality(&session_id, &publisher, source, quality);
                (r, None, Some(session_id), None)
            }
            ToRtcd::IceRestart { session_id } => {
                let r = self.ice_restart(now, &session_id);
                (r, None, Some(session_id), None)
            }
        };
        if let Err(e) = result {
            if matches!(e, CoreError::BadSdp(_)) {
                self.stats.drop(DropReason::BadSdp);
            }
            if matches!(e, CoreError::BadCandidate(_)) {
                self.stats.drop(DropReason::BadCandidate);
            }
            self.emit(FromRtcd::Error(RtcdError {
                code: e.code(),
                message: e.to_string(),
                call_id,
                session_id,
                request,
            }));
        }
        self.run_actions(now);
        self.flush(now);
    }

    fn with_session(
        &mut self,
        id: &SessionId,
        f: impl FnOnce(&mut Session),
    ) -> Result<(), CoreError> {
        let key = self.key_of(id)?;
        let s = self
            .sessions
            .get_mut(&key)
            .expect("by_id and sessions agree");
        f(s);
        Ok(())
    }

    pub(crate) fn key_of(&self, id: &SessionId) -> Result<SessionKey, CoreError> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| CoreError::UnknownSession(id.clone()))
    }

    /// Makes room for a call. Idempotent.
    pub fn create_call(&mut self, call_id: CallId) {
        if !self.calls.contains_key(&call_id) {
            self.calls.insert(call_id.clone(), Call::new(false));
            self.stats.calls = self.calls.len() as u64;
        } else if let Some(c) = self.calls.get_mut(&call_id) {
            // Control now owns a call that WHIP opened: it lives until ended.
            c.ephemeral = false;
        }
    }

    /// A call for WHIP/WHEP: an existing one, or a new one that ends with
    /// its last session.
    fn media_call(&mut self, call_id: &CallId) {
        if !self.calls.contains_key(call_id) {
            self.calls.insert(call_id.clone(), Call::new(true));
            self.stats.calls = self.calls.len() as u64;
        }
    }

    /// Ends an ephemeral call that has no session left.
    fn end_if_abandoned(&mut self, call_id: &CallId) {
        if self.drop_if_abandoned(call_id) {
            self.emit(FromRtcd::CallEnded {
                call_id: call_id.clone(),
            });
        }
    }

    fn drop_if_abandoned(&mut self, call_id: &CallId) -> bool {
        let abandoned = self
            .calls
            .get(call_id)
            .is_some_and(|c| c.ephemeral && c.sessions.is_empty());
        if abandoned {
            self.calls.remove(call_id);
            self.stats.calls = self.calls.len() as u64;
        }
        abandoned
    }

    /// After a refused WHIP/WHEP offer: if the call does not exist here,
    /// say so, so the driver forgets the placement it made for it.
    fn forget_if_absent<T>(&mut self, call_id: &CallId, r: &Result<T, CoreError>) {
        if r.is_err() && !self.calls.contains_key(call_id) {
            self.emit(FromRtcd::CallEnded {
                call_id: call_id.clone(),
            });
        }
    }

    /// Ends a call and closes every session in it.
    pub fn end_call(&mut self, now: Instant, call_id: &CallId) -> Result<(), CoreError> {
        let call = self
            .calls
            .get(call_id)
            .ok_or_else(|| CoreError::UnknownCall(call_id.clone()))?;
        for key in call.sessions.clone() {
            self.close_session(now, key, CloseReason::CallEnded);
        }
        self.calls.remove(call_id);
        self.stats.calls = self.calls.len() as u64;
        self.emit(FromRtcd::CallEnded {
            call_id: call_id.clone(),
        });
        self.run_actions(now);
        Ok(())
    }

    /// Closes every session and call, e.g. when a drain deadline passes.
    pub fn close_all(&mut self, now: Instant, reason: CloseReason) {
        let keys: Vec<SessionKey> = self.sessions.keys().copied().collect();
        for key in keys {
            self.close_session(now, key, reason);
        }
        let calls: Vec<CallId> = self.calls.keys().cloned().collect();
        for call_id in calls {
            self.calls.remove(&call_id);
            self.emit(FromRtcd::CallEnded { call_id });
        }
        self.stats.calls = 0;
        self.run_actions(now);
    }

    /// Admits a participant; its client then sends the first offer.
    pub fn add_session(
        &mut self,
        now: Instant,
        call_id: &CallId,
        session_id: SessionId,
        permissions: Permissions,
    ) -> Result<SessionKey, CoreError> {
        self.insert_session(now, call_id, session_id, SessionKind::Signaled, permissions)
    }

    fn insert_session(
        &mut self,
        now: Instant,
        call_id: &CallId,
        session_id: SessionId,
        kind: SessionKind,
        permissions: Permissions,
    ) -> Result<SessionKey, CoreError> {
        if !self.calls.contains_key(call_id) {
            return Err(CoreError::UnknownCall(call_id.clone()));
        }
        if self.by_id.contains_key(&session_id) {
            return Err(CoreError::Conflict(format!("session {session_id}")));
        }
        if self.sessions.len() >= self.config.max_sessions {
            return Err(CoreError::Limit(format!(
                "{} sessions on this worker",
                self.config.max_sessions
            )));
        }
        let ufrag = new_ufrag(self.config.worker);
        tracing::debug!(session = %session_id, %ufrag, "session created");
        let rtc = self.build_rtc(now, &ufrag);
        let key = self.next_key;
        self.next_key += 1;
        self.demux.add_session(ufrag.clone(), key);
        self.sessions.insert(
            key,
            Session {
                id: session_id.clone(),
                call: call_id.clone(),
                kind,
                permissions,
                rtc,
                ufrags: vec![ufrag.clone()],
                ufrag,
                connectivity: Connectivity::Connecting,
                created: now,
                remote_addrs: Vec::new(),
                muted: false,
                video_enabled: true,
                screen_enabled: true,
                inputs: Vec::new(),
                ssrc_map: HashMap::new(),
                outputs: FastMap::default(),
                declared: HashMap::new(),
                remote_described: false,
                pending: None,
                next_negotiation: 1,
                dirty: false,
                vad: Default::default(),
                egress_nacks: HashMap::new(),
                rtc_deadline: now,
                scheduled: None,
                touched: false,
            },
        );
        self.by_id.insert(session_id, key);
        self.calls
            .get_mut(call_id)
            .expect("checked above")
            .sessions
            .push(key);
        self.stats.sessions_created += 1;
        self.stats.sessions = self.sessions.len() as u64;
        self.drain(now, key);
        Ok(key)
    }

    fn build_rtc(&self, now: Instant, ufrag: &str) -> Rtc {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_dtls_cert(self.config.dtls_cert.clone())
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.to_string(),
                pass: new_ice_password(),
            })
            .set_stats_interval(Some(std::time::Duration::from_secs(5)))
            // Caps every outgoing video stream's resend cache in packets;
            // its age limit is set per stream on the first write (`forward`).
            .set_send_buffer_video(self.config.resend_window_packets)
            .build(now);
        for addr in &self.config.udp_candidates {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        for addr in &self.config.tcp_candidates {
            if let Ok(c) = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build()
            {
                rtc.add_local_candidate(c);
            }
        }
        rtc
    }

    /// Removes a participant at once.
    pub fn remove_session(
        &mut self,
        now: Instant,
        id: &SessionId,
        reason: CloseReason,
    ) -> Result<(), CoreError> {
        let key = self.key_of(id)?;
        self.close_session(now, key, reason);
        self.run_actions(now);
        Ok(())
    }

    /// Removes a session and every route to it (ids, ufrags, addresses,
    /// call membership).
    fn unroute_session(&mut self, key: SessionKey) -> Option<Session> {
        let s = self.sessions.remove(&key)?;
        self.by_id.remove(&s.id);
        for u in &s.ufrags {
            self.demux.remove_ufrag(u);
        }
        for (proto, addr) in &s.remote_addrs {
            self.demux.remove_addr(*proto, *addr);
        }
        if let Some(call) = self.calls.get_mut(&s.call) {
            call.sessions.retain(|k| *k != key);
        }
        self.stats.sessions = self.sessions.len() as u64;
        Some(s)
    }

    /// Forgets a session nobody outside the core ever learned of.
    fn discard_session(&mut self, key: SessionKey) {
        self.unroute_session(key);
    }

    pub(crate) fn close_session(&mut self, _now: Instant, key: SessionKey, reason: CloseReason) {
        let Some(mut s) = self.unroute_session(key) else {
            return;
        };
        // Its subscribers lose the tracks; rtcd offers them the change.
        for track in &s.inputs {
            for (sub, mid) in &track.subscribers {
                if let Some(sub_s) = self.sessions.get_mut(sub) {
                    if let Some(out) = sub_s.outputs.get_mut(mid) {
                        out.publisher = None;
                    }
                    if sub_s.kind == SessionKind::Signaled {
                        self.actions.push_back(Action::Renegotiate(*sub));
                    }
                }
            }
        }
        // Its publishers stop sending to it.
        for (mid, out) in &s.outputs {
            if let Some((p, t)) = out.publisher
                && let Some(track) = self.sessions.get_mut(&p).and_then(|p| p.inputs.get_mut(t))
            {
                track.subscribers.retain(|(k, m)| !(*k == key && m == mid));
            }
        }
        s.rtc.disconnect();
        self.stats.sessions_closed += 1;
        if reason == CloseReason::Failed {
            self.stats.session_failures += 1;
        }
        self.emit(FromRtcd::SessionState {
            session_id: s.id.clone(),
            state: SessionState::Closed { reason },
        });
        self.end_if_abandoned(&s.call);
    }

    /// A trickled candidate from the client (`a=` prefix optional). An empty
    /// candidate marks the end of candidates and is accepted.
    pub fn add_remote_candidate(
        &mut self,
        now: Instant,
        id: &SessionId,
        candidate: &IceCandidate,
    ) -> Result<(), CoreError> {
        let key = self.key_of(id)?;
        let line = candidate.candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        if line.is_empty() {
            return Ok(());
        }
        let c =
            Candidate::from_sdp_string(line).map_err(|e| CoreError::BadCandidate(e.to_string()))?;
        let s = self.sessions.get_mut(&key).expect("key_of checked");
        s.rtc.add_remote_candidate(c);
        self.drain(now, key);
        self.run_actions(now);
        Ok(())
    }

    // -------------------------------------------------------------- WHIP/WHEP

    /// A WHIP publisher's offer: creates its session and answers.
    pub fn whip(
        &mut self,
        now: Instant,
        call_id: &CallId,
        offer: &str,
    ) -> Result<WhipAnswer, CoreError> {
        let session_id = random_session_id("whip");
        let perms = Permissions {
            subscribe: false,
            ..Permissions::PARTICIPANT
        };
        let r = self.one_shot_offer(now, call_id, session_id, SessionKind::Whip, perms, offer);
        self.forget_if_absent(call_id, &r);
        r
    }

    /// A WHEP player's offer: creates its session, bound to a publisher.
    pub fn whep(&mut self, now: Instant, req: WhepRequest) -> Result<WhipAnswer, CoreError> {
        let call_id = req.call_id.clone();
        let r = self.whep_inner(now, req);
        self.forget_if_absent(&call_id, &r);
        r
    }

    fn whep_inner(&mut self, now: Instant, req: WhepRequest) -> Result<WhipAnswer, CoreError> {
        if let Some(p) = &req.publisher
            && !self.by_id.contains_key(p)
        {
            return Err(CoreError::UnknownSession(p.clone()));
        }
        let session_id = random_session_id("whep");
        let kind = SessionKind::Whep {
            publisher: req.publisher,
        };
        self.one_shot_offer(
            now,
            &req.call_id,
            session_id,
            kind,
            Permissions::RECEIVE_ONLY,
            &req.offer,
        )
    }

    fn one_shot_offer(
        &mut self,
        now: Instant,
        call_id: &CallId,
        session_id: SessionId,
        kind: SessionKind,
        perms: Permissions,
        offer: &str,
    ) -> Result<WhipAnswer, CoreError> {
        // A WHEP player receives only: its m-lines need no send-side extensions.
        let offer = without_send_side_extensions(offer, "recvonly");
        let offer = parse_offer(&offer).inspect_err(|_| self.stats.drop(DropReason::BadSdp))?;
        self.media_call(call_id);
        let key = match self.insert_session(now, call_id, session_id.clone(), kind, perms) {
            Ok(k) => k,
            Err(e) => {
                self.drop_if_abandoned(call_id);
                return Err(e);
            }
        };
        let s = self.sessions.get_mut(&key).expect("just inserted");
        match s.rtc.sdp_api().accept_offer(offer) {
            Ok(answer) => {
                s.remote_described = true;
                self.drain(now, key);
                self.run_actions(now);
                Ok(WhipAnswer {
                    session_id,
                    sdp: answer.to_sdp_string(),
                })
            }
            Err(e) => {
                self.stats.drop(DropReason::BadSdp);
                self.discard_session(key);
                self.drop_if_abandoned(call_id);
                Err(CoreError::BadSdp(e.to_string()))
            }
        }
    }

    // ------------------------------------------------------------- datagrams

    /// Feeds one received datagram. `Err` says why it was dropped (already
    /// counted); running calls are never disturbed by a bad datagram.
    /// Audio it carries is forwarded at once; video joins the backlog that
    /// [`Sfu::forward_backlog`] fans out.
    pub fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) -> Result<(), DropReason> {
        let r = self.datagram(now, d);
        if let Err(reason) = r {
            self.stats.drop(reason);
        }
        self.run_actions(now);
        if self.forwarded_since_flush >= FLUSH_AFTER_FORWARDS {
            self.flush(now);
        }
        r
    }

    fn datagram(&mut self, now: Instant, d: Datagram<'_>) -> Result<(), DropReason> {
        if d.contents.len() > MAX_DATAGRAM {
            return Err(DropReason::Oversized);
        }
        let other = MediaClass::Other as usize;
        self.stats.packets_in[other] += 1;
        self.stats.bytes_in[other] += d.contents.len() as u64;
        let (key, new_path) = self
            .demux
            .route(d.proto, d.source, d.contents)
            .ok_or(DropReason::UnknownSource)?;
        let contents = d.contents.try_into().map_err(|_| DropReason::Rejected)?;
        let input = Input::Receive(
            now,
            Receive {
                proto: d.proto.to_str0m(),
                source: d.source,
                destination: self.config.to_advertised(d.destination),
                contents,
            },
        );
        let s = self
            .sessions
            .get_mut(&key)
            .ok_or(DropReason::UnknownSource)?;
        if new_path {
            // Only a STUN request that the session accepts (its ufrag) opens a path.
            if !s.rtc.accepts(&input) {
                tracing::debug!(session = %s.id, source = %d.source, "STUN on a new path refused");
                return Err(DropReason::Rejected);
            }
            tracing::debug!(session = %s.id, source = %d.source, "new path");
            s.remote_addrs.push((d.proto, d.source));
            self.demux.learn(d.proto, d.source, key);
        }
        let result = s.rtc.handle_input(input);
        self.drain(now, key);
        result.map_err(|_| DropReason::Rejected)
    }

    // ---------------------------------------------------------------- time

    /// Sends what forwarding wrote to subscribers since the last flush.
    ///
    /// str0m releases a packet written to a session only when it is next
    /// given the time, so the driver calls this once it has fed the
    /// datagrams it read in one go (rtcd: once per loop turn): one timeout
    /// per touched subscriber per call rather than one per forwarded
    /// packet. [`Sfu::handle_timeout`] and [`Sfu::handle_command`] flush
    /// too, and so do [`Sfu::handle_datagram`] and
    /// [`Sfu::forward_backlog`] every [`FLUSH_AFTER_FORWARDS`] forwarded
    /// packets. A flush between two slices of the video backlog releases
    /// what was written so far, the audio forwarded meanwhile with it.
    pub fn flush(&mut self, now: Instant) {
        self.forwarded_since_flush = 0;
        while !self.touched.is_empty() {
            let touched = std::mem::take(&mut self.touched);
            for key in &touched {
                let Some(s) = self.sessions.get_mut(key) else {
                    continue;
                };
                s.touched = false;
                self.stats.release_passes += 1;
                if s.rtc.handle_input(Input::Timeout(now)).is_err() {
                    self.close_session(now, *key, CloseReason::Failed);
                    continue;
                }
                self.drain(now, *key);
            }
            self.run_actions(now);
            // Reuse the allocation unless draining touched more sessions.
            if self.touched.is_empty() {
                self.touched = touched;
                self.touched.clear();
            }
        }
        self.audio_unflushed_since = None;
    }

    /// Wakes the sessions whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            if s.scheduled != Some(at) {
                continue;
            }
            s.scheduled = None;
            self.wake(now, key);
        }
        self.run_actions(now);
        self.flush(now);
    }

    fn wake(&mut self, now: Instant, key: SessionKey) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.rtc_deadline <= now && s.rtc.handle_input(Input::Timeout(now)).is_err() {
            self.close_session(now, key, CloseReason::Failed);
            return;
        }
        if let Some(speaking) = s.vad.check_silence(now) {
            let session_id = s.id.clone();
            self.emit(FromRtcd::VoiceActivity {
                session_id,
                speaking,
            });
        }
        self.flush_keyframe_requests(now, key);
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        let expired = match s.connectivity {
            Connectivity::Connecting => {
                now.saturating_duration_since(s.created) >= self.config.connect_timeout
            }
            Connectivity::Disconnected(since) => {
                now.saturating_duration_since(since) >= self.config.disconnect_timeout
            }
            Connectivity::Connected => false,
        };
        if expired || !s.rtc.is_alive() {
            self.close_session(now, key, CloseReason::Timeout);
            return;
        }
        self.drain(now, key);
    }

    /// Polls one session until str0m has nothing more to say, then
    /// schedules its next wake-up.
    pub(crate) fn drain(&mut self, now: Instant, key: SessionKey) {
        loop {
            let Some(s) = self.sessions.get_mut(&key) else {
                return;
            };
            let out = match s.rtc.poll_output() {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(session = %s.id, error = %e, "session failed");
                    self.close_session(now, key, CloseReason::Failed);
                    return;
                }
            };
            match out {
                str0m::Output::Timeout(t) => {
                    s.rtc_deadline = t;
                    let mut deadline = t;
                    if let Some(v) = s.vad.deadline() {
                        deadline = deadline.min(v);
                    }
                    let conn_deadline = match s.connectivity {
                        Connectivity::Connecting => Some(s.created + self.config.connect_timeout),
                        Connectivity::Disconnected(since) => {
                            Some(since + self.config.disconnect_timeout)
                        }
                        Connectivity::Connected => None,
                    };
                    if let Some(c) = conn_deadline {
                        deadline = deadline.min(c);
                    }
                    let interval = self.config.keyframe_request_interval;
                    for l in s.inputs.iter().flat_map(|t| &t.layers) {
                        if l.keyframe_pending.is_some()
                            && let Some(at) = l.last_keyframe_request
                        {
                            deadline = deadline.min(at + interval);
                        }
                    }
                    self.timers
                        .schedule(key, deadline.max(now), &mut s.scheduled);
                    return;
                }
                str0m::Output::Transmit(t) => {
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += t.contents.len() as u64;
                    let proto = match t.proto {
                        str0m::net::Protocol::Tcp => Protocol::Tcp,
                        _ => Protocol::Udp,
                    };
                    self.outputs.push_back(Output::Transmit(Transmit {
                        proto,
                        source: self.config.to_internal(t.source),
                        destination: t.destination,
                        contents: t.contents.into(),
                    }));
                }
                str0m::Output::Event(e) => self.on_event(now, key, e),
            }
        }
    }

    fn on_event(&mut self, now: Instant, key: SessionKey, event: Event) {
        match event {
            Event::Connected => self.set_connectivity(now, key, Connectivity::Connected),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.set_connectivity(now, key, Connectivity::Disconnected(now))
            }
            // Back after a loss of connectivity (DTLS survived): connected
            // again. Before the first DTLS handshake only `Connected` counts.
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self
                .sessions
                .get(&key)
                .is_some_and(|s| matches!(s.connectivity, Connectivity::Disconnected(_))) =>
            {
                self.set_connectivity(now, key, Connectivity::Connected)
            }
            Event::IceConnectionStateChange(_) => {}
            Event::MediaAdded(m) => self.on_media_added(key, m),
            Event::MediaChanged(m) => self.on_media_changed(key, m),
            Event::RtpPacket(p) => self.on_rtp(now, key, p),
            Event::KeyframeRequest(r) => self.on_keyframe_request(key, r),
            Event::StreamPaused(p) => self.on_stream_paused(key, p),
            Event::PeerStats(p) => {
                if let Some(rtt) = p.rtt {
                    self.stats.rtt.observe(rtt.as_secs_f64());
                }
            }
            Event::MediaIngressStats(m) => self.on_ingress_stats(key, m),
            Event::MediaEgressStats(m) => self.on_egress_stats(key, m),
            Event::Closed => self.close_session(now, key, CloseReason::PeerClosed),
            _ => {}
        }
    }

    fn set_connectivity(&mut self, now: Instant, key: SessionKey, to: Connectivity) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let was = s.connectivity;
        if matches!(
            (was, to),
            (Connectivity::Connected, Connectivity::Connected)
                | (Connectivity::Disconnected(_), Connectivity::Disconnected(_))
                | (Connectivity::Connecting, Connectivity::Disconnected(_))
        ) {
            return;
        }
        s.connectivity = to;
        let first_connect = (was == Connectivity::Connecting && to == Connectivity::Connected)
            .then(|| now.saturating_duration_since(s.created));
        let state = match to {
            Connectivity::Connected => SessionState::Connected,
            Connectivity::Disconnected(_) => SessionState::Disconnected,
            Connectivity::Connecting => SessionState::Connecting,
        };
        let session_id = s.id.clone();
        if let Some(took) = first_connect {
            self.stats.session_connect.observe(took.as_secs_f64());
        }
        self.emit(FromRtcd::SessionState { session_id, state });
        if to == Connectivity::Connected {
            // A new (or returning) subscriber needs a keyframe of everything.
            self.request_keyframes_for(key, now);
        }
    }
}

pub(crate) fn parse_offer(sdp: &str) -> Result<SdpOffer, CoreError> {
    SdpOffer::from_sdp_string(sdp).map_err(|e| CoreError::BadSdp(e.to_string()))
}

fn random_session_id(prefix: &str) -> SessionId {
    use rand::Rng as _;
    let n: u64 = rand::rng().random();
    SessionId::new(format!("{prefix}-{n:016x}")).expect("prefix and hex are valid id characters")
}
