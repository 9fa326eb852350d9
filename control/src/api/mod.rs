//! The HTTP surface. Everything under `/api/v1` is JSON; every handler
//! that touches chat data takes a [`crate::auth::CurrentUser`] and checks
//! access through [`access`] before reading or writing.

pub mod access;
pub mod auth;
pub mod channels;
pub mod json;
pub mod openapi;
pub mod ops;
pub mod posts;
pub mod teams;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use crate::AppState;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/users", post(users::create))
        .route("/users/me", get(auth::me))
        .route("/users/me/password", put(auth::change_password))
        .route("/users/me/sessions", get(auth::list_sessions))
        .route(
            "/users/me/sessions/{id}",
            axum::routing::delete(auth::revoke_session),
        )
        .route(
            "/users/me/tokens",
            get(auth::list_tokens).post(auth::create_token),
        )
        .route(
            "/users/me/tokens/{id}",
            axum::routing::delete(auth::revoke_token),
        )
        .route("/users/me/channels", get(channels::mine))
        .route("/users/me/unreads", get(channels::unreads))
        .route("/users/{id}", get(users::get))
        .route("/teams", get(teams::mine).post(teams::create))
        .route("/teams/{id}", get(teams::get))
        .route("/teams/{id}/members", post(teams::add_member))
        .route(
            "/teams/{id}/members/{user_id}",
            axum::routing::delete(teams::remove_member),
        )
        .route(
            "/teams/{id}/channels",
            get(channels::list_for_team).post(channels::create),
        )
        .route("/channels/direct", post(channels::direct))
        .route("/channels/group", post(channels::group))
        .route("/channels/{id}", get(channels::get))
        .route("/channels/{id}/join", post(channels::join))
        .route("/channels/{id}/leave", post(channels::leave))
        .route(
            "/channels/{id}/members",
            get(channels::members).post(channels::add_member),
        )
        .route("/channels/{id}/view", post(channels::view))
        .route("/channels/{id}/posts", get(posts::list).post(posts::create))
        .route("/channels/{id}/pinned", get(posts::pinned))
        .route(
            "/posts/{id}",
            get(posts::get).patch(posts::edit).delete(posts::delete),
        )
        .route("/posts/{id}/thread", get(posts::thread))
        .route("/posts/{id}/history", get(posts::history))
        .route("/posts/{id}/reactions", get(posts::reactions))
        .route(
            "/posts/{id}/reactions/{emoji}",
            put(posts::react).delete(posts::unreact),
        )
        .route("/posts/{id}/pin", put(posts::pin).delete(posts::unpin))
        .route("/websocket", get(crate::ws::socket::upgrade))
        .route("/openapi.json", get(openapi::document))
        .fallback(ops::not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}
