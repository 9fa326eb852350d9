//! Who may see and do what. Every chat handler goes through these checks.
//!
//! Not-found versus forbidden: anything the user may not know exists (a
//! private, direct or group channel they are not in, another team, a post
//! in such a channel) is answered 404, exactly like an id that does not
//! exist, so guessing ids reveals nothing. An open channel of the user's
//! own team that they have not joined is visible (they can list and join
//! it), so reading or posting there without joining is 403 `not_a_member`.

use signaling::events::{Channel, ChannelKind, Post};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::channels::{self, Membership};
use crate::db::teams::{self, TeamRole};
use crate::db::{DbError, posts};
use crate::error::AppError;

/// The user's role in a team; system admins act as team admins. 404 when
/// the user is not in the team.
pub async fn team_role(
    state: &AppState,
    user: &CurrentUser,
    team_id: &str,
) -> Result<TeamRole, AppError> {
    teams::get(&state.db, team_id).await?;
    if user.is_admin() {
        return Ok(TeamRole::Admin);
    }
    teams::role(&state.db, team_id, user.id())
        .await?
        .ok_or(AppError::NotFound)
}

/// A channel the user may see: one they are in, or an open channel of a
/// team where they are a member (not a guest).
pub async fn visible_channel(
    state: &AppState,
    user: &CurrentUser,
    channel_id: &str,
) -> Result<(Channel, Option<Membership>), AppError> {
    let ch = channels::get(&state.db, channel_id).await?;
    let m = channels::membership_of(&state.db, channel_id, user.id()).await?;
    if m.is_some() {
        return Ok((ch, m));
    }
    if ch.kind == ChannelKind::Open
        && let Some(team) = &ch.team_id
    {
        let role = teams::role(&state.db, team, user.id()).await?;
        if matches!(role, Some(TeamRole::Admin | TeamRole::Member)) {
            return Ok((ch, None));
        }
    }
    Err(AppError::NotFound)
}

/// A channel the user is a member of (to read or post).
pub async fn member_channel(
    state: &AppState,
    user: &CurrentUser,
    channel_id: &str,
) -> Result<(Channel, Membership), AppError> {
    match visible_channel(state, user, channel_id).await? {
        (ch, Some(m)) => Ok((ch, m)),
        (_, None) => Err(AppError::Forbidden("not_a_member")),
    }
}

/// A post in a channel the user is a member of. Deleted posts are found
/// (for threads) but flagged; callers that change posts refuse them.
pub async fn member_post(
    state: &AppState,
    user: &CurrentUser,
    post_id: &str,
) -> Result<(Post, Channel, Membership), AppError> {
    let post = match posts::get(&state.db, post_id).await {
        Ok(p) => p,
        Err(DbError::NotFound) => return Err(AppError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let (ch, m) = member_channel(state, user, &post.channel_id).await?;
    Ok((post, ch, m))
}

/// May the user manage the channel (pin for others, remove members)?
pub async fn can_manage_channel(
    state: &AppState,
    user: &CurrentUser,
    ch: &Channel,
    m: &Membership,
) -> Result<bool, AppError> {
    if user.is_admin() || m.role == channels::ChannelRole::Admin {
        return Ok(true);
    }
    if let Some(team) = &ch.team_id {
        return Ok(teams::role(&state.db, team, user.id()).await? == Some(TeamRole::Admin));
    }
    Ok(false)
}
