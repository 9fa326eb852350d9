//! Calls and their sessions, bans and rings. Every change writes its
//! `call_*` events (scope: the call's channel) in the same transaction and
//! bumps `calls.version` first, which serialises the changes of one call
//! on PostgreSQL (the update locks the row) as SQLite's single writer
//! does; counts and "last one out" checks are therefore exact.
//!
//! Refusals come back as [`DbError::Conflict`] with a stable code
//! (`call_ended`, `call_full`, `removed_from_call`, `screen_share_taken`,
//! `not_ringing`, `session_not_found`, [`CALL_RUNNING`]); the API layer
//! words them.

use signaling::call::{CallInfo, LeaveReason, Participant, ParticipantChange, RingEnd};
use signaling::events::Event;
use signaling::ids::{CallId, SessionId};
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::events::{self, Scope};
use super::posts::{self, Mentions, NewPost};
use super::{Backend, Db, DbError, DbResult, is_unique_violation};

/// Another call started in the channel first (never shown to clients:
/// the joiner joins that one).
pub const CALL_RUNNING: &str = "call_running";

/// A call as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    pub id: CallId,
    pub channel_id: String,
    pub post_id: String,
    pub started_by: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// The rtcd node hosting it (the media pool's key).
    pub node: String,
    pub recording: bool,
}

/// A session as stored, live or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub participant: Participant,
    pub call_id: CallId,
    /// The control node instance that speaks to rtcd for it.
    pub owner: String,
    pub left_at: Option<i64>,
    pub leave_reason: Option<String>,
    pub media_lost_at: Option<i64>,
}

impl SessionRow {
    pub fn live(&self) -> bool {
        self.left_at.is_none()
    }
}

fn bad_id(e: signaling::ids::IdError) -> DbError {
    DbError::Corrupt(format!("stored call or session id: {e}"))
}

fn call_row(row: &AnyRow) -> DbResult<CallRow> {
    Ok(CallRow {
        id: CallId::new(row.try_get::<String, _>("id")?).map_err(bad_id)?,
        channel_id: row.try_get("channel_id")?,
        post_id: row.try_get("post_id")?,
        started_by: row.try_get("started_by")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        node: row.try_get("node")?,
        recording: row.try_get::<i64, _>("recording")? != 0,
    })
}

fn session_row(row: &AnyRow) -> DbResult<SessionRow> {
    let flag = |name: &str| -> DbResult<bool> { Ok(row.try_get::<i64, _>(name)? != 0) };
    Ok(SessionRow {
        participant: Participant {
            session_id: SessionId::new(row.try_get::<String, _>("id")?).map_err(bad_id)?,
            user_id: row.try_get("user_id")?,
            joined_at: row.try_get("joined_at")?,
            host: flag("host")?,
            muted: flag("muted")?,
            camera: flag("camera")?,
            screen: flag("screen")?,
            hand_raised: flag("hand_raised")?,
            connected: flag("connected")?,
            bot: flag("bot")?,
        },
        call_id: CallId::new(row.try_get::<String, _>("call_id")?).map_err(bad_id)?,
        owner: row.try_get("owner")?,
        left_at: row.try_get("left_at")?,
        leave_reason: row.try_get("leave_reason")?,
        media_lost_at: row.try_get("media_lost_at")?,
    })
}

const CALL_COLUMNS: &str =
    "id, channel_id, post_id, started_by, started_at, ended_at, node, recording";
const SESSION_COLUMNS: &str = "id, call_id, user_id, owner, joined_at, left_at, leave_reason, host, muted, camera, screen, hand_raised, connected, media_lost_at, bot";

async fn call_in(conn: &mut AnyConnection, id: &str) -> DbResult<CallRow> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(DbError::NotFound)?;
    call_row(&row)
}

pub async fn get(db: &Db, id: &str) -> DbResult<CallRow> {
    call_in(&mut *db.pool.acquire().await?, id).await
}

/// The call running in a channel, if any.
pub async fn running_in(db: &Db, channel_id: &str) -> DbResult<Option<CallRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE channel_id = $1 AND ended_at IS NULL"
    )))
    .bind(channel_id)
    .fetch_optional(&db.pool)
    .await?
    .as_ref()
    .map(call_row)
    .transpose()
}

pub async fn session(db: &Db, id: &str) -> DbResult<Option<SessionRow>> {
    session_in(&mut *db.pool.acquire().await?, id).await
}

async fn session_in(conn: &mut AnyConnection, id: &str) -> DbResult<Option<SessionRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SESSION_COLUMNS} FROM call_sessions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(session_row)
    .transpose()
}

async fn live_in(conn: &mut AnyConnection, call_id: &str) -> DbResult<Vec<SessionRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SESSION_COLUMNS} FROM call_sessions WHERE call_id = $1 AND left_at IS NULL
         ORDER BY joined_at, id"
    )))
    .bind(call_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(session_row).collect()
}

/// The live sessions of a call, in the order they joined.
pub async fn live_sessions(db: &Db, call_id: &str) -> DbResult<Vec<SessionRow>> {
    live_in(&mut *db.pool.acquire().await?, call_id).await
}

/// Display names (the username when none is set) of everyone who has
/// been in the call.
pub async fn participant_names(
    db: &Db,
    call_id: &str,
) -> DbResult<std::collections::BTreeMap<String, String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT u.id, u.username, u.display_name FROM call_sessions s
         JOIN users u ON u.id = s.user_id WHERE s.call_id = $1",
    )
    .bind(call_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get("display_name")?;
            let name = if name.is_empty() {
                r.try_get("username")?
            } else {
                name
            };
            Ok((r.try_get("id")?, name))
        })
        .collect()
}

/// Users with a live session in the call (the audience of its ephemeral
/// messages).
pub async fn live_user_ids(db: &Db, call_id: &str) -> DbResult<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT user_id FROM call_sessions WHERE call_id = $1 AND left_at IS NULL",
    )
    .bind(call_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("user_id")?)).collect()
}

fn info(call: &CallRow, live: &[SessionRow], max_participants: u32) -> CallInfo {
    CallInfo {
        id: call.id.clone(),
        channel_id: call.channel_id.clone(),
        started_by: call.started_by.clone(),
        started_at: call.started_at,
        ended_at: call.ended_at,
        post_id: call.post_id.clone(),
        participants: live.iter().map(|s| s.participant.clone()).collect(),
        max_participants,
        recording: call.recording,
    }
}

async fn info_in(conn: &mut AnyConnection, call_id: &str, max: u32) -> DbResult<CallInfo> {
    let call = call_in(conn, call_id).await?;
    let live = if call.ended_at.is_some() {
        Vec::new()
    } else {
        live_in(conn, call_id).await?
    };
    Ok(info(&call, &live, max))
}

/// The call as clients see it (no participants once it ended).
pub async fn info_of(db: &Db, call_id: &str, max_participants: u32) -> DbResult<CallInfo> {
    info_in(&mut *db.pool.acquire().await?, call_id, max_participants).await
}

/// Bumps the call's version: locks it for this transaction. The call
/// must still run.
async fn lock(conn: &mut AnyConnection, call_id: &str) -> DbResult<CallRow> {
    let n =
        sqlx::query("UPDATE calls SET version = version + 1 WHERE id = $1 AND ended_at IS NULL")
            .bind(call_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    if n == 0 {
        return match call_in(conn, call_id).await {
            Ok(_) => Err(DbError::Conflict("call_ended")),
            Err(e) => Err(e),
        };
    }
    call_in(conn, call_id).await
}

async fn emit(
    conn: &mut AnyConnection,
    backend: Backend,
    channel: &str,
    ev: &Event,
    now: i64,
) -> DbResult<()> {
    events::append(conn, backend, Scope::Channel(channel), ev, now).await
}

/// Who joins, and how.
#[derive(Debug, Clone)]
pub struct Joining<'a> {
    pub user_id: &'a str,
    pub session_id: &'a SessionId,
    /// This control node instance: it adds the session on rtcd.
    pub owner: &'a str,
    pub max_participants: u32,
    /// A receive-only bot (recorder, captioner) rather than a person.
    pub bot: bool,
    pub now: i64,
}

/// A join that went through.
#[derive(Debug, Clone)]
pub struct Joined {
    pub call: CallRow,
    pub participant: Participant,
    pub info: CallInfo,
    /// The call was started by this join.
    pub started: bool,
}

async fn join_in(
    conn: &mut AnyConnection,
    backend: Backend,
    call: &CallRow,
    j: &Joining<'_>,
) -> DbResult<Participant> {
    let banned = sqlx::query("SELECT 1 AS one FROM call_bans WHERE call_id = $1 AND user_id = $2")
        .bind(call.id.as_str())
        .bind(j.user_id)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    if banned {
        return Err(DbError::Conflict("removed_from_call"));
    }
    let live = live_in(conn, call.id.as_str()).await?;
    let people = live.iter().filter(|s| !s.participant.bot).count();
    if !j.bot && people as u64 >= u64::from(j.max_participants) {
        return Err(DbError::Conflict("call_full"));
    }
    let p = Participant {
        session_id: j.session_id.clone(),
        user_id: j.user_id.to_owned(),
        joined_at: j.now,
        // The first person in (the starter) hosts.
        host: !j.bot && people == 0,
        muted: false,
        camera: false,
        screen: false,
        hand_raised: false,
        connected: false,
        bot: j.bot,
    };
    sqlx::query(
        "INSERT INTO call_sessions (id, call_id, user_id, owner, joined_at, host, bot)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(p.session_id.as_str())
    .bind(call.id.as_str())
    .bind(j.user_id)
    .bind(j.owner)
    .bind(j.now)
    .bind(i64::from(p.host))
    .bind(i64::from(p.bot))
    .execute(&mut *conn)
    .await?;
    if j.bot {
        set_recording(conn, call.id.as_str(), true).await?;
    } else {
        end_ring(conn, backend, call, j.user_id, RingEnd::Joined, j.now).await?;
    }
    emit(
        conn,
        backend,
        &call.channel_id,
        &Event::CallJoined {
            call_id: call.id.clone(),
            channel_id: call.channel_id.clone(),
            participant: p.clone(),
        },
        j.now,
    )
    .await?;
    Ok(p)
}

/// Whether a bot records the call (shown to clients as `recording`).
async fn set_recording(conn: &mut AnyConnection, call_id: &str, on: bool) -> DbResult<()> {
    sqlx::query("UPDATE calls SET recording = $2 WHERE id = $1")
        .bind(call_id)
        .bind(i64::from(on))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Joins the running call `call_id`.
pub async fn join(db: &Db, call_id: &str, j: &Joining<'_>) -> DbResult<Joined> {
    let mut tx = db.begin_write().await?;
    let call = lock(&mut tx, call_id).await?;
    let participant = join_in(&mut tx, db.backend, &call, j).await?;
    let info = info_in(&mut tx, call_id, j.max_participants).await?;
    tx.commit().await?;
    Ok(Joined {
        call,
        participant,
        info,
        started: false,
    })
}

/// A call about to start.
#[derive(Debug, Clone)]
pub struct Starting<'a> {
    pub call_id: &'a CallId,
    pub channel_id: &'a str,
    /// Direct and group calls ring the other members.
    pub ring: bool,
    /// Queue a Teams notification for each ring (`[m365.notifications]`).
    pub notify_teams: bool,
    pub node: &'a str,
}

/// Starts a call in the channel with `j` as its first participant and
/// host: its post, its rings and `call_started`, then the join.
/// [`CALL_RUNNING`] when another call got there first.
pub async fn start(db: &Db, s: &Starting<'_>, j: &Joining<'_>) -> DbResult<Joined> {
    let mut tx = db.begin_write().await?;
    let username: String = sqlx::query("SELECT username FROM users WHERE id = $1")
        .bind(j.user_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("username")?;
    // The post's insert locks the channel row first, so a concurrent
    // start waits here and then finds this call.
    let post = posts::insert_in(
        &mut tx,
        db.backend,
        &NewPost {
            channel_id: s.channel_id,
            user_id: j.user_id,
            message: &format!("{username} started a call"),
            ..Default::default()
        },
        &Mentions::default(),
        j.now,
    )
    .await?;
    let r = sqlx::query(
        "INSERT INTO calls (id, channel_id, post_id, started_by, started_at, node)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(s.call_id.as_str())
    .bind(s.channel_id)
    .bind(&post.id)
    .bind(j.user_id)
    .bind(j.now)
    .bind(s.node)
    .execute(&mut *tx)
    .await;
    match r {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(DbError::Conflict(CALL_RUNNING)),
        Err(e) => return Err(e.into()),
    }
    if s.ring {
        sqlx::query(
            "INSERT INTO call_rings (call_id, user_id, started_at)
             SELECT $1, user_id, $2 FROM channel_members WHERE channel_id = $3 AND user_id <> $4",
        )
        .bind(s.call_id.as_str())
        .bind(j.now)
        .bind(s.channel_id)
        .bind(j.user_id)
        .execute(&mut *tx)
        .await?;
        if s.notify_teams {
            super::m365_outbox::enqueue_rings(
                &mut tx,
                s.call_id.as_str(),
                s.channel_id,
                j.user_id,
                j.now,
            )
            .await?;
        }
    }
    let call = call_in(&mut tx, s.call_id.as_str()).await?;
    emit(
        &mut tx,
        db.backend,
        s.channel_id,
        &Event::CallStarted {
            call: info(&call, &[], j.max_participants),
        },
        j.now,
    )
    .await?;
    let participant = join_in(&mut tx, db.backend, &call, j).await?;
    let info = info_in(&mut tx, s.call_id.as_str(), j.max_participants).await?;
    tx.commit().await?;
    Ok(Joined {
        call,
        participant,
        info,
        started: true,
    })
}

/// Ends `user_id`'s ring if it still rings; true if it did.
async fn end_ring(
    conn: &mut AnyConnection,
    backend: Backend,
    call: &CallRow,
    user_id: &str,
    reason: RingEnd,
    now: i64,
) -> DbResult<bool> {
    let n = sqlx::query(
        "UPDATE call_rings SET ended_at = $3, end_reason = $4
         WHERE call_id = $1 AND user_id = $2 AND ended_at IS NULL",
    )
    .bind(call.id.as_str())
    .bind(user_id)
    .bind(now)
    .bind(ring_end_str(reason))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    emit(
        conn,
        backend,
        &call.channel_id,
        &Event::CallRingEnded {
            call_id: call.id.clone(),
            channel_id: call.channel_id.clone(),
            user_id: user_id.to_owned(),
            reason,
        },
        now,
    )
    .await?;
    Ok(true)
}

fn ring_end_str(r: RingEnd) -> &'static str {
    match r {
        RingEnd::Joined => "joined",
        RingEnd::Declined => "declined",
        RingEnd::Timeout => "timeout",
        RingEnd::CallEnded => "call_ended",
    }
}

fn leave_str(r: LeaveReason) -> &'static str {
    match r {
        LeaveReason::Left => "left",
        LeaveReason::Removed => "removed",
        LeaveReason::Disconnected => "disconnected",
        LeaveReason::CallEnded => "call_ended",
    }
}

/// The user declines the call ringing for them.
pub async fn decline(db: &Db, call_id: &str, user_id: &str, now: i64) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    let call = lock(&mut tx, call_id).await?;
    if !end_ring(&mut tx, db.backend, &call, user_id, RingEnd::Declined, now).await? {
        return Err(DbError::Conflict("not_ringing"));
    }
    tx.commit().await?;
    Ok(())
}

/// Ends every ring that started before `cutoff`; returns how many. Safe
/// with several nodes: each ring ends once, by whichever update gets it.
pub async fn expire_rings(db: &Db, cutoff: i64, now: i64) -> DbResult<usize> {
    let due = sqlx::query(
        "SELECT call_id, user_id FROM call_rings WHERE ended_at IS NULL AND started_at < $1 LIMIT 200",
    )
    .bind(cutoff)
    .fetch_all(&db.pool)
    .await?;
    let mut n = 0;
    for row in due {
        let call_id: String = row.try_get("call_id")?;
        let user_id: String = row.try_get("user_id")?;
        let mut tx = db.begin_write().await?;
        let call = call_in(&mut tx, &call_id).await?;
        if end_ring(&mut tx, db.backend, &call, &user_id, RingEnd::Timeout, now).await? {
            n += 1;
        }
        tx.commit().await?;
    }
    Ok(n)
}

/// What a leave or an end did.
#[derive(Debug, Clone, Default)]
pub struct Left {
    /// Sessions that left (live before), with their owners.
    pub sessions: Vec<SessionRow>,
    /// Set when the call ended with it: the node to tell.
    pub ended: Option<CallRow>,
}

/// Sessions leave the call: one session (`Left`, `Disconnected`), or
/// every live session of its user (`Removed`, who is then banned from the
/// call). The last one out ends the call; if the last host left, the
/// longest-present participant hosts.
pub async fn leave(
    db: &Db,
    call_id: &str,
    session_id: &str,
    reason: LeaveReason,
    now: i64,
) -> DbResult<Left> {
    let mut tx = db.begin_write().await?;
    let call = lock(&mut tx, call_id).await?;
    let live = live_in(&mut tx, call_id).await?;
    let Some(target) = live
        .iter()
        .find(|s| s.participant.session_id.as_str() == session_id)
    else {
        return Err(DbError::Conflict("session_not_found"));
    };
    let user_id = target.participant.user_id.clone();
    let (going, staying): (Vec<SessionRow>, Vec<SessionRow>) = live.into_iter().partition(|s| {
        if reason == LeaveReason::Removed {
            s.participant.user_id == user_id
        } else {
            s.participant.session_id.as_str() == session_id
        }
    });
    if reason == LeaveReason::Removed {
        sqlx::query(
            "INSERT INTO call_bans (call_id, user_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(call_id)
        .bind(&user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    for s in &going {
        close_session(&mut tx, db.backend, &call, s, reason, now).await?;
    }
    if going.iter().any(|s| s.participant.bot) && !staying.iter().any(|s| s.participant.bot) {
        set_recording(&mut tx, call_id, false).await?;
    }
    // Bots do not keep a call alive: the last person out ends it.
    let people: Vec<&SessionRow> = staying.iter().filter(|s| !s.participant.bot).collect();
    let ended = if people.is_empty() {
        let bots: Vec<SessionRow> = staying
            .iter()
            .filter(|s| s.participant.bot)
            .cloned()
            .collect();
        finish_in(&mut tx, db.backend, &call, &bots, None, now).await?;
        Some(call_in(&mut tx, call_id).await?)
    } else {
        if !people.iter().any(|s| s.participant.host) {
            let mut heir = people[0].participant.clone();
            heir.host = true;
            sqlx::query("UPDATE call_sessions SET host = 1 WHERE id = $1")
                .bind(heir.session_id.as_str())
                .execute(&mut *tx)
                .await?;
            changed(&mut tx, db.backend, &call, heir, now).await?;
        }
        None
    };
    tx.commit().await?;
    Ok(Left {
        sessions: going,
        ended,
    })
}

async fn close_session(
    conn: &mut AnyConnection,
    backend: Backend,
    call: &CallRow,
    s: &SessionRow,
    reason: LeaveReason,
    now: i64,
) -> DbResult<()> {
    sqlx::query(
        "UPDATE call_sessions SET left_at = $2, leave_reason = $3, screen = 0, connected = 0
         WHERE id = $1",
    )
    .bind(s.participant.session_id.as_str())
    .bind(now)
    .bind(leave_str(reason))
    .execute(&mut *conn)
    .await?;
    emit(
        conn,
        backend,
        &call.channel_id,
        &Event::CallLeft {
            call_id: call.id.clone(),
            channel_id: call.channel_id.clone(),
            session_id: s.participant.session_id.clone(),
            user_id: s.participant.user_id.clone(),
            reason,
        },
        now,
    )
    .await
}

/// A host ends the call for everyone.
pub async fn end(db: &Db, call_id: &str, ended_by: &str, now: i64) -> DbResult<Left> {
    let mut tx = db.begin_write().await?;
    let call = lock(&mut tx, call_id).await?;
    let live = live_in(&mut tx, call_id).await?;
    finish_in(&mut tx, db.backend, &call, &live, Some(ended_by), now).await?;
    let ended = call_in(&mut tx, call_id).await?;
    tx.commit().await?;
    Ok(Left {
        sessions: live,
        ended: Some(ended),
    })
}

/// Ends the call: `live` leave, rings stop, the post gets the duration
/// and who took part, `call_ended`.
async fn finish_in(
    conn: &mut AnyConnection,
    backend: Backend,
    call: &CallRow,
    live: &[SessionRow],
    ended_by: Option<&str>,
    now: i64,
) -> DbResult<()> {
    for s in live {
        close_session(conn, backend, call, s, LeaveReason::CallEnded, now).await?;
    }
    let ringing =
        sqlx::query("SELECT user_id FROM call_rings WHERE call_id = $1 AND ended_at IS NULL")
            .bind(call.id.as_str())
            .fetch_all(&mut *conn)
            .await?;
    for r in ringing {
        let user: String = r.try_get("user_id")?;
        end_ring(conn, backend, call, &user, RingEnd::CallEnded, now).await?;
    }
    let ended_at = now.max(call.started_at);
    sqlx::query("UPDATE calls SET ended_at = $2, ended_by = $3 WHERE id = $1")
        .bind(call.id.as_str())
        .bind(ended_at)
        .bind(ended_by)
        .execute(&mut *conn)
        .await?;
    let names = sqlx::query(
        "SELECT u.username, MIN(s.joined_at) AS first FROM call_sessions s
         JOIN users u ON u.id = s.user_id WHERE s.call_id = $1 AND s.bot = 0
         GROUP BY u.username ORDER BY first, u.username",
    )
    .bind(call.id.as_str())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>("username"))
    .collect::<Result<Vec<_>, _>>()?;
    let duration_ms = ended_at - call.started_at;
    let message = format!(
        "Call ended after {} with {}",
        format_duration(duration_ms),
        names.join(", ")
    );
    posts::edit_in(conn, backend, &call.post_id, &message, now).await?;
    emit(
        conn,
        backend,
        &call.channel_id,
        &Event::CallEnded {
            call_id: call.id.clone(),
            channel_id: call.channel_id.clone(),
            ended_at,
            duration_ms,
            ended_by: ended_by.map(str::to_owned),
        },
        now,
    )
    .await
}

/// `1:02:03`, `2:03` or `0:03`, like a call timer.
pub fn format_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

async fn changed(
    conn: &mut AnyConnection,
    backend: Backend,
    call: &CallRow,
    participant: Participant,
    now: i64,
) -> DbResult<()> {
    emit(
        conn,
        backend,
        &call.channel_id,
        &Event::CallParticipantChanged {
            call_id: call.id.clone(),
            channel_id: call.channel_id.clone(),
            participant,
        },
        now,
    )
    .await
}

async fn write_flags(conn: &mut AnyConnection, p: &Participant) -> DbResult<()> {
    let r = sqlx::query(
        "UPDATE call_sessions SET host = $2, muted = $3, camera = $4, screen = $5,
             hand_raised = $6, connected = $7
         WHERE id = $1",
    )
    .bind(p.session_id.as_str())
    .bind(i64::from(p.host))
    .bind(i64::from(p.muted))
    .bind(i64::from(p.camera))
    .bind(i64::from(p.screen))
    .bind(i64::from(p.hand_raised))
    .bind(i64::from(p.connected))
    .execute(&mut *conn)
    .await;
    match r {
        Ok(_) => Ok(()),
        // The partial unique index: someone else shares their screen.
        Err(e) if is_unique_violation(&e) => Err(DbError::Conflict("screen_share_taken")),
        Err(e) => Err(e.into()),
    }
}

/// Applies `f` to a live session of the call and emits the change (if
/// anything changed). Returns the participant as it is now.
async fn update(
    db: &Db,
    call_id: &str,
    session_id: &str,
    now: i64,
    f: impl FnOnce(&mut Participant, &[SessionRow]) -> DbResult<()>,
) -> DbResult<Participant> {
    let mut tx = db.begin_write().await?;
    let call = lock(&mut tx, call_id).await?;
    let live = live_in(&mut tx, call_id).await?;
    let Some(s) = live
        .iter()
        .find(|s| s.participant.session_id.as_str() == session_id)
    else {
        return Err(DbError::Conflict("session_not_found"));
    };
    let mut p = s.participant.clone();
    f(&mut p, &live)?;
    if p != s.participant {
        write_flags(&mut tx, &p).await?;
        changed(&mut tx, db.backend, &call, p.clone(), now).await?;
    }
    tx.commit().await?;
    Ok(p)
}

/// Mute, camera, screen or hand. A second screen share is refused.
pub async fn change(
    db: &Db,
    call_id: &str,
    session_id: &str,
    c: &ParticipantChange,
    now: i64,
) -> DbResult<Participant> {
    update(db, call_id, session_id, now, |p, live| {
        if c.screen == Some(true)
            && live
                .iter()
                .any(|o| o.participant.screen && o.participant.session_id != p.session_id)
        {
            return Err(DbError::Conflict("screen_share_taken"));
        }
        p.muted = c.muted.unwrap_or(p.muted);
        p.camera = c.camera.unwrap_or(p.camera);
        p.screen = c.screen.unwrap_or(p.screen);
        p.hand_raised = c.hand_raised.unwrap_or(p.hand_raised);
        Ok(())
    })
    .await
}

pub async fn make_host(
    db: &Db,
    call_id: &str,
    session_id: &str,
    now: i64,
) -> DbResult<Participant> {
    update(db, call_id, session_id, now, |p, _| {
        p.host = true;
        Ok(())
    })
    .await
}

/// rtcd reports the session's media up (or down).
pub async fn set_connected(
    db: &Db,
    call_id: &str,
    session_id: &str,
    connected: bool,
    now: i64,
) -> DbResult<Participant> {
    if connected {
        sqlx::query("UPDATE call_sessions SET media_lost_at = NULL WHERE id = $1")
            .bind(session_id)
            .execute(&db.pool)
            .await?;
    }
    update(db, call_id, session_id, now, |p, _| {
        p.connected = connected;
        Ok(())
    })
    .await
}

/// rtcd closed the session: the client has until the grace window ends
/// to offer again. Keeps the first loss time.
pub async fn media_lost(db: &Db, call_id: &str, session_id: &str, now: i64) -> DbResult<()> {
    sqlx::query(
        "UPDATE call_sessions SET media_lost_at = COALESCE(media_lost_at, $2)
         WHERE id = $1 AND left_at IS NULL",
    )
    .bind(session_id)
    .bind(now)
    .execute(&db.pool)
    .await?;
    set_connected(db, call_id, session_id, false, now).await?;
    Ok(())
}

/// The client offers again: its session is back (rtcd gets it re-added).
pub async fn media_back(db: &Db, session_id: &str) -> DbResult<()> {
    sqlx::query("UPDATE call_sessions SET media_lost_at = NULL WHERE id = $1")
        .bind(session_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Sessions this node speaks for whose media was lost before `cutoff`.
pub async fn lost_before(db: &Db, owner: &str, cutoff: i64) -> DbResult<Vec<SessionRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SESSION_COLUMNS} FROM call_sessions
         WHERE owner = $1 AND left_at IS NULL AND media_lost_at < $2"
    )))
    .bind(owner)
    .bind(cutoff)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(session_row).collect()
}

/// This node takes over speaking for the session (the client's socket is
/// here). Returns false if it already did.
pub async fn take_over(db: &Db, session_id: &str, owner: &str) -> DbResult<bool> {
    Ok(sqlx::query(
        "UPDATE call_sessions SET owner = $2 WHERE id = $1 AND owner <> $2 AND left_at IS NULL",
    )
    .bind(session_id)
    .bind(owner)
    .execute(&db.pool)
    .await?
    .rows_affected()
        > 0)
}

/// Mutes every live session but those of `except_user`; returns those it
/// muted.
pub async fn mute_others(
    db: &Db,
    call_id: &str,
    except_user: &str,
    now: i64,
) -> DbResult<Vec<Participant>> {
    let mut tx = db.begin_write().await?;
    let call = lock(&mut tx, call_id).await?;
    let mut muted = Vec::new();
    for s in live_in(&mut tx, call_id).await? {
        if s.participant.user_id == except_user || s.participant.muted {
            continue;
        }
        let mut p = s.participant;
        p.muted = true;
        write_flags(&mut tx, &p).await?;
        changed(&mut tx, db.backend, &call, p.clone(), now).await?;
        muted.push(p);
    }
    tx.commit().await?;
    Ok(muted)
}

/// Running calls hosted on a media node.
pub async fn running_on(db: &Db, node: &str) -> DbResult<Vec<CallRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE node = $1 AND ended_at IS NULL ORDER BY id"
    )))
    .bind(node)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(call_row).collect()
}

/// How many running calls each media node hosts, by node key.
pub async fn running_per_node(db: &Db) -> DbResult<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT node, COUNT(*) AS n FROM calls WHERE ended_at IS NULL GROUP BY node ORDER BY node",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("node")?, r.try_get("n")?)))
        .collect()
}

/// Moves a running call from `old` to `new` unless another control node
/// moved it first. Returns where the call lives now (`None`: it ended).
pub async fn move_node(db: &Db, call_id: &str, old: &str, new: &str) -> DbResult<Option<String>> {
    sqlx::query(
        "UPDATE calls SET node = $3, version = version + 1
         WHERE id = $1 AND node = $2 AND ended_at IS NULL",
    )
    .bind(call_id)
    .bind(old)
    .bind(new)
    .execute(&db.pool)
    .await?;
    let call = get(db, call_id).await?;
    Ok(call.ended_at.is_none().then_some(call.node))
}

#[cfg(test)]
mod tests {
    use super::format_duration;

    #[test]
    fn durations_read_like_a_call_timer() {
        assert_eq!(format_duration(3_400), "0:03");
        assert_eq!(format_duration(65_000), "1:05");
        assert_eq!(format_duration(3_723_000), "1:02:03");
        assert_eq!(format_duration(-5), "0:00");
    }
}
