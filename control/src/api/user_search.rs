//! `GET /users/search`: people to pick while typing (a direct or group
//! message, adding someone to a channel, an @mention).
//!
//! Who is found: enabled accounts whose username, display name or a word
//! of the display name starts with `q`, among the people the caller may
//! see (they share a team where the caller is not a guest, or share any
//! channel; a system admin sees everyone; see [`users::search`]). With
//! `team_id`, only that team's members, and the caller must be in it (404
//! otherwise, as for any team they cannot see). Emails are never returned.
//!
//! Bounded: `q` is 1 to [`MAX_QUERY_CHARS`] characters and at most
//! [`MAX_LIMIT`] people come back, so a one-letter query on a large
//! directory costs one short index-ordered read, not a list of everyone.

use axum::extract::State;
use serde::Deserialize;

use super::access::team_role;
use super::json::{Json, Query};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::users::{self, Lookup, User};
use crate::error::AppError;

/// Longest accepted query: a username is at most 64 characters.
pub const MAX_QUERY_CHARS: usize = 64;
/// Most people one answer lists.
pub const MAX_LIMIT: i64 = 50;
/// People listed when `limit` is not given: an autocompletion list.
pub const DEFAULT_LIMIT: i64 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// What the user typed; a leading `@` is ignored.
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    /// Taken as text so that `limit=ten` gets `invalid_limit`, not the
    /// query parser's generic message.
    #[serde(default)]
    pub limit: Option<String>,
}

/// The lower-cased prefix to look for, or why `q` is refused.
fn prefix(q: Option<&str>) -> Result<String, AppError> {
    let bad = |why: &str| AppError::Invalid("invalid_query", why.into());
    let q = q.ok_or_else(|| bad("q is required: the start of a username or a name"))?;
    let q = q.trim();
    let q = q.strip_prefix('@').unwrap_or(q);
    if q.is_empty() {
        return Err(bad("q is empty: type at least one character"));
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(bad("q is at most 64 characters"));
    }
    if q.chars().any(char::is_control) {
        return Err(bad("q holds a control character"));
    }
    Ok(q.to_lowercase())
}

fn limit(raw: Option<&str>) -> Result<i64, AppError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(AppError::Invalid(
            "invalid_limit",
            format!("limit is a whole number from 1 to {MAX_LIMIT}"),
        )),
    }
}

pub async fn search(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(p): Query<SearchParams>,
) -> Result<Json<Vec<User>>, AppError> {
    let prefix = prefix(p.q.as_deref())?;
    let limit = limit(p.limit.as_deref())?;
    if let Some(team) = &p.team_id {
        team_role(&state, &user, team).await?;
    }
    let mut found = users::search(
        &state.db,
        Lookup {
            prefix: &prefix,
            caller: user.id(),
            caller_is_admin: user.is_admin(),
            team_id: p.team_id.as_deref(),
            limit,
        },
    )
    .await?;
    for u in &mut found {
        u.email = None;
    }
    Ok(Json(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(prefix(Some(" @Ali ")).unwrap(), "ali");
        assert_eq!(prefix(Some("Élodie")).unwrap(), "élodie");
        for bad in [None, Some(""), Some("  "), Some("@"), Some("a\u{0}b")] {
            assert_eq!(prefix(bad).unwrap_err().code(), "invalid_query", "{bad:?}");
        }
        assert!(prefix(Some(&"a".repeat(64))).is_ok());
        assert!(prefix(Some(&"a".repeat(65))).is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("50")).unwrap(), 50);
        for bad in ["0", "51", "-1", "ten", ""] {
            assert_eq!(limit(Some(bad)).unwrap_err().code(), "invalid_limit");
        }
    }
}
