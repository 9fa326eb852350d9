//! Joining a scenario's participants through Janus's VideoRoom instead of
//! rtcd's control API: one room per call; a publisher joins with its own
//! offer; a listener subscribes to every publisher of its call and answers
//! Janus's offer. Janus publishers receive nothing (a VideoRoom publisher
//! handle is send-only), so only listeners count as receivers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Ctx, Note, Plan, Planned};
use crate::janus::api::{Closed, RoomSpec, Session};
use crate::worker::Cmd;

/// Room numbers start here (call 0 is room 1000).
const FIRST_ROOM: u64 = 1000;

pub(super) struct JanusCalls {
    session: Arc<Session>,
    /// Per call: its publishers' feed ids (their participant numbers).
    feeds: Vec<Vec<u64>>,
    handles: Mutex<HashMap<u64, u32>>,
}

fn room(call: usize) -> u64 {
    FIRST_ROOM + call as u64
}

/// Opens the session and creates one room per call.
pub(super) async fn setup(
    api: std::net::SocketAddr,
    plan: &Plan,
) -> anyhow::Result<(Arc<JanusCalls>, mpsc::UnboundedReceiver<Closed>)> {
    let (closed_tx, closed_rx) = mpsc::unbounded_channel();
    let session = Session::create(api, closed_tx).await?;
    let mut feeds = vec![Vec::new(); plan.calls];
    for p in plan.initial.iter().chain(plan.storm.iter()) {
        if !p.spec.sends.is_empty() {
            feeds[p.call].push(u64::from(p.pid));
        }
    }
    let admin = session.attach().await?;
    for (call, f) in feeds.iter().enumerate() {
        session
            .create_room(
                admin,
                RoomSpec {
                    room: room(call),
                    publishers: f.len(),
                },
            )
            .await?;
    }
    Ok((
        Arc::new(JanusCalls {
            session,
            feeds,
            handles: Mutex::default(),
        }),
        closed_rx,
    ))
}

pub(super) async fn teardown(j: &JanusCalls) {
    j.session.destroy().await;
}

fn fail(ctx: &Ctx, pid: u32, error: String) {
    if let Some(e) = ctx.book.lock().expect("book lock").entries.get_mut(&pid) {
        e.failed.get_or_insert(error);
    }
}

/// Attaches a handle for `pid` and records it.
async fn attach(ctx: &Ctx, j: &JanusCalls, pid: u32) -> anyhow::Result<u64> {
    let h = j.session.attach().await?;
    j.handles.lock().expect("handles lock").insert(h, pid);
    if let Some(e) = ctx.book.lock().expect("book lock").entries.get_mut(&pid) {
        e.session = Some(h.to_string());
    }
    Ok(h)
}

fn handle_of(ctx: &Ctx, pid: u32) -> Option<u64> {
    let book = ctx.book.lock().expect("book lock");
    book.entries.get(&pid)?.session.as_deref()?.parse().ok()
}

/// Starts a participant's join (its book entry exists already).
pub(super) fn join(ctx: &Arc<Ctx>, j: &Arc<JanusCalls>, p: &Planned, worker: usize) {
    let mut spec = p.spec.clone();
    // VideoRoom rooms here carry no data channels, and a subscriber
    // answers the room's offer instead of offering.
    spec.data_channel = false;
    spec.silent_sends.clear();
    let listener = spec.sends.is_empty();
    spec.answer_only = listener;
    ctx.workers[worker].send(Cmd::Join(spec));
    if !listener {
        // The worker's offer comes back as a note; see `on_offer`.
        return;
    }
    let (ctx, j, pid, call) = (ctx.clone(), j.clone(), p.pid, p.call);
    tokio::spawn(async move {
        let r = async {
            let h = attach(&ctx, &j, pid).await?;
            j.session.subscribe(h, room(call), &j.feeds[call]).await
        }
        .await;
        match r {
            Ok(sdp) => ctx.workers[worker].send(Cmd::Offer {
                pid,
                sdp,
                negotiation: 0,
            }),
            Err(e) => fail(&ctx, pid, format!("Janus subscribe: {e:#}")),
        }
    });
}

/// A publisher's offer: join its room with it, hand back Janus's answer.
fn on_offer(ctx: &Arc<Ctx>, j: &Arc<JanusCalls>, pid: u32, sdp: String) {
    let Some((call, worker)) = ctx
        .book
        .lock()
        .expect("book lock")
        .entries
        .get(&pid)
        .map(|e| (e.call, e.worker))
    else {
        return;
    };
    let (ctx, j) = (ctx.clone(), j.clone());
    tokio::spawn(async move {
        let r = async {
            let h = attach(&ctx, &j, pid).await?;
            let answer = j
                .session
                .publish(h, room(call), u64::from(pid), &sdp)
                .await?;
            ctx.workers[worker].send(Cmd::Answer { pid, sdp: answer });
            j.session.end_of_candidates(h).await
        }
        .await;
        if let Err(e) = r {
            fail(&ctx, pid, format!("Janus publish: {e:#}"));
        }
    });
}

/// A listener's answer to Janus's offer: start the subscription.
fn on_answer(ctx: &Arc<Ctx>, j: &Arc<JanusCalls>, pid: u32, sdp: String) {
    let Some(h) = handle_of(ctx, pid) else {
        return;
    };
    let (ctx, j) = (ctx.clone(), j.clone());
    tokio::spawn(async move {
        let r = async {
            j.session.start(h, &sdp).await?;
            j.session.end_of_candidates(h).await
        }
        .await;
        if let Err(e) = r {
            fail(&ctx, pid, format!("Janus start: {e:#}"));
        }
    });
}

/// Routes the generator's notes (and Janus's hangups) until the notes end.
pub(super) async fn route(
    ctx: Arc<Ctx>,
    j: Arc<JanusCalls>,
    mut notes: mpsc::UnboundedReceiver<Note>,
    mut closed: mpsc::UnboundedReceiver<Closed>,
) {
    loop {
        tokio::select! {
            n = notes.recv() => match n {
                Some(Note::Offer { pid, sdp, .. }) => on_offer(&ctx, &j, pid, sdp),
                Some(Note::Answer { pid, sdp, .. }) => on_answer(&ctx, &j, pid, sdp),
                Some(n) => super::on_note(&ctx, n),
                None => break,
            },
            Some(c) = closed.recv() => {
                let pid = j.handles.lock().expect("handles lock").get(&c.handle).copied();
                if let Some(pid) = pid {
                    fail(&ctx, pid, format!("Janus closed the handle: {}", c.reason));
                }
            }
        }
    }
}
