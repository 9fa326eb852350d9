//! The node: its workers, where each call and session lives, the control
//! connections, and the drain state. Touched per control message, never
//! per packet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use signaling::rtcd::{ErrorCode, FromRtcd, NodeLoad, RtcdError, SessionState, ToRtcd};
use signaling::{CallId, SessionId};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::tcp::TcpRegistry;
use crate::worker::{Snapshot, WorkerHandle, WorkerMsg};

pub type ConnId = u64;

/// Counters of refused input outside the media path (the core counts its own).
#[derive(Default)]
pub struct Rejections {
    pub unauthenticated: AtomicU64,
    pub bad_message: AtomicU64,
    pub oversized: AtomicU64,
    pub version: AtomicU64,
    pub draining: AtomicU64,
    pub whip_bad_request: AtomicU64,
}

#[derive(Default)]
struct Placement {
    calls: HashMap<CallId, usize>,
    /// Worker, owning control connection, call.
    sessions: HashMap<SessionId, (usize, Option<ConnId>, CallId)>,
}

pub struct Node {
    pub config: Arc<Config>,
    pub workers: Vec<WorkerHandle>,
    placement: Mutex<Placement>,
    conns: Mutex<HashMap<ConnId, mpsc::Sender<FromRtcd>>>,
    next_conn: AtomicU64,
    draining: AtomicBool,
    /// When the drain closes what is left; reported to control so it can
    /// move the calls before then.
    drain_deadline: Mutex<Option<Instant>>,
    pub rejections: Rejections,
    pub tcp: Arc<TcpRegistry>,
    pub udp_port: u16,
    pub events_dropped: AtomicU64,
}

impl Node {
    pub fn new(
        config: Arc<Config>,
        workers: Vec<WorkerHandle>,
        tcp: Arc<TcpRegistry>,
        udp_port: u16,
    ) -> Self {
        Node {
            config,
            workers,
            placement: Mutex::default(),
            conns: Mutex::default(),
            next_conn: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            drain_deadline: Mutex::new(None),
            rejections: Rejections::default(),
            tcp,
            udp_port,
            events_dropped: AtomicU64::new(0),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Takes no new calls from now on; no deadline is reported.
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Takes no new calls, and tells control that the calls left at
    /// `deadline` will be closed, so that it moves them before.
    pub fn start_drain_until(&self, deadline: Instant) {
        *self.drain_deadline.lock().expect("drain lock") = Some(deadline);
        self.start_drain();
    }

    /// Time left before the drain deadline, while draining with one.
    pub fn drain_remaining(&self) -> Option<std::time::Duration> {
        if !self.is_draining() {
            return None;
        }
        let deadline = (*self.drain_deadline.lock().expect("drain lock"))?;
        Some(deadline.saturating_duration_since(crate::clock::now()))
    }

    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.workers
            .iter()
            .map(|w| w.snapshot.lock().map(|s| s.clone()).unwrap_or_default())
            .collect()
    }

    pub fn load(&self) -> NodeLoad {
        let snaps = self.snapshots();
        let p = self.placement.lock().expect("placement lock");
        NodeLoad {
            calls: p.calls.len() as u32,
            sessions: snaps.iter().map(|s| s.core.sessions as u32).sum(),
            workers: self.workers.len() as u32,
            cpu: snaps.iter().map(|s| s.busy).sum(),
            draining: self.is_draining(),
            drain_remaining_ms: self.drain_remaining().map(|d| d.as_millis() as u64),
        }
    }

    /// Every call this node holds, sorted.
    pub fn call_ids(&self) -> Vec<CallId> {
        let p = self.placement.lock().expect("placement lock");
        let mut ids: Vec<CallId> = p.calls.keys().cloned().collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids
    }

    pub fn call_count(&self) -> usize {
        self.placement.lock().expect("placement lock").calls.len()
    }

    pub fn conn_count(&self) -> usize {
        self.conns.lock().expect("conns lock").len()
    }

    pub fn register_conn(&self, tx: mpsc::Sender<FromRtcd>) -> ConnId {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().expect("conns lock").insert(id, tx);
        id
    }

    /// A control node went away: its sessions live on, and their events go
    /// to every control node until one takes them over.
    pub fn unregister_conn(&self, id: ConnId) {
        self.conns.lock().expect("conns lock").remove(&id);
        let mut p = self.placement.lock().expect("placement lock");
        for (_, owner, _) in p.sessions.values_mut() {
            if *owner == Some(id) {
                *owner = None;
            }
        }
    }

    /// Ends every control connection: each one's session sees its queue
    /// close and closes the socket, so control learns the node is gone
    /// even when this node was embedded and its process lives on.
    pub fn close_conns(&self) {
        self.conns.lock().expect("conns lock").clear();
    }

    /// The worker for a new call: the one with the fewest sessions.
    fn place(&self, p: &mut Placement, call: &CallId) -> usize {
        if let Some(w) = p.calls.get(call) {
            return *w;
        }
        let snaps = self.snapshots();
        let mut counts = vec![0u64; self.workers.len()];
        for (w, s) in snaps.iter().enumerate() {
            counts[w] = s.core.sessions;
        }
        for w in p.calls.values() {
            counts[*w] += 1;
        }
        let w = (0..self.workers.len())
            .min_by_key(|w| counts[*w])
            .unwrap_or(0);
        p.calls.insert(call.clone(), w);
        w
    }

    /// Routes a control message to its worker. `Err` is the error to send
    /// back to the control node.
    pub fn command(&self, conn: ConnId, msg: ToRtcd) -> Result<(), RtcdError> {
        let err =
            |code, message: String, call: Option<&CallId>, session: Option<&SessionId>| RtcdError {
                code,
                message,
                call_id: call.cloned(),
                session_id: session.cloned(),
                request: None,
            };
        let worker = {
            let mut p = self.placement.lock().expect("placement lock");
            match &msg {
                ToRtcd::Hello { .. } | ToRtcd::GetLoad | ToRtcd::ListCalls => return Ok(()),
                ToRtcd::CreateCall { call_id, request } => {
                    if self.is_draining() && !p.calls.contains_key(call_id) {
                        self.rejections.draining.fetch_add(1, Ordering::Relaxed);
                        return Err(RtcdError {
                            request: *request,
                            ..err(
                                ErrorCode::Draining,
                                "this node is draining and takes no new calls".into(),
                                Some(call_id),
                                None,
                            )
                        });
                    }
                    self.place(&mut p, call_id)
                }
                ToRtcd::EndCall { call_id, request } => match p.calls.get(call_id) {
                    Some(w) => *w,
                    None => {
                        return Err(RtcdError {
                            request: *request,
                            ..err(
                                ErrorCode::UnknownCall,
                                format!("no call {call_id}"),
                                Some(call_id),
                                None,
                            )
                        });
                    }
                },
                ToRtcd::AddSession {
                    call_id,
                    session_id,
                    request,
                    ..
                } => match p.calls.get(call_id).copied() {
                    // Session ids are unique per node, not just per worker.
                    Some(_) if p.sessions.contains_key(session_id) => {
                        return Err(RtcdError {
                            request: *request,
                            ..err(
                                ErrorCode::Conflict,
                                format!("session {session_id} is already in use"),
                                Some(call_id),
                                Some(session_id),
                            )
                        });
                    }
                    Some(w) => {
                        p.sessions
                            .insert(session_id.clone(), (w, Some(conn), call_id.clone()));
                        w
                    }
                    None => {
                        return Err(RtcdError {
                            request: *request,
                            ..err(
                                ErrorCode::UnknownCall,
                                format!("no call {call_id}"),
                                Some(call_id),
                                Some(session_id),
                            )
                        });
                    }
                },
                ToRtcd::RemoveSession { session_id, .. }
                | ToRtcd::Offer { session_id, .. }
                | ToRtcd::Answer { session_id, .. }
                | ToRtcd::Candidate { session_id, .. }
                | ToRtcd::SetMuted { session_id, .. }
                | ToRtcd::SetVideo { session_id, .. }
                | ToRtcd::SetScreen { session_id, .. }
                | ToRtcd::SetQuality { session_id, .. }
                | ToRtcd::IceRestart { session_id } => match p.sessions.get_mut(session_id) {
                    Some((w, owner, _)) => {
                        // The control node that speaks for a session owns its events.
                        *owner = Some(conn);
                        *w
                    }
                    None => {
                        return Err(err(
                            ErrorCode::UnknownSession,
                            format!("no session {session_id}"),
                            None,
                            Some(session_id),
                        ));
                    }
                },
            }
        };
        self.workers[worker]
            .send(WorkerMsg::Command(msg))
            .map_err(|_| {
                err(
                    ErrorCode::Limit,
                    "worker mailbox full; retry".into(),
                    None,
                    None,
                )
            })
    }

    /// The worker hosting (or to host) a call for WHIP/WHEP; `None` when
    /// the node is draining and the call is new.
    pub fn worker_for_call(&self, call: &CallId) -> Option<usize> {
        let mut p = self.placement.lock().expect("placement lock");
        if self.is_draining() && !p.calls.contains_key(call) {
            self.rejections.draining.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.place(&mut p, call))
    }

    /// The worker of a session, if it belongs to `call`.
    pub fn worker_for_session(&self, call: &CallId, session: &SessionId) -> Option<usize> {
        self.placement
            .lock()
            .expect("placement lock")
            .sessions
            .get(session)
            .filter(|(_, _, c)| c == call)
            .map(|(w, _, _)| *w)
    }

    pub fn record_session(&self, session: SessionId, worker: usize, call: CallId) {
        self.placement
            .lock()
            .expect("placement lock")
            .sessions
            .insert(session, (worker, None, call));
    }

    /// Delivers worker events to control nodes and keeps placement current.
    pub async fn route_events(self: Arc<Self>, mut rx: mpsc::Receiver<FromRtcd>) {
        while let Some(event) = rx.recv().await {
            let owner = {
                let mut p = self.placement.lock().expect("placement lock");
                match &event {
                    FromRtcd::SessionState {
                        session_id,
                        state: SessionState::Closed { .. },
                    } => p.sessions.remove(session_id).and_then(|(_, o, _)| o),
                    FromRtcd::CallEnded { call_id } => {
                        p.calls.remove(call_id);
                        None
                    }
                    _ => session_of(&event)
                        .and_then(|s| p.sessions.get(s))
                        .and_then(|(_, o, _)| *o),
                }
            };
            let targets: Vec<mpsc::Sender<FromRtcd>> = {
                let conns = self.conns.lock().expect("conns lock");
                match owner.and_then(|o| conns.get(&o)) {
                    Some(tx) => vec![tx.clone()],
                    None => conns.values().cloned().collect(),
                }
            };
            for tx in targets {
                if tx.try_send(event.clone()).is_err() {
                    self.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn session_of(e: &FromRtcd) -> Option<&SessionId> {
    match e {
        FromRtcd::Answer { session_id, .. }
        | FromRtcd::Offer { session_id, .. }
        | FromRtcd::Candidate { session_id, .. }
        | FromRtcd::SessionState { session_id, .. }
        | FromRtcd::Track { session_id, .. }
        | FromRtcd::VoiceActivity { session_id, .. } => Some(session_id),
        FromRtcd::Error(e) => e.session_id.as_ref(),
        _ => None,
    }
}
