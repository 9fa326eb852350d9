//! The HTTP surface. Everything under `/api/v1` is JSON; every handler
//! that touches chat data takes a [`crate::auth::CurrentUser`] and checks
//! access through [`access`] before reading or writing.

pub mod access;
pub mod auth;
pub mod bots;
pub mod call_bots;
pub mod calls;
pub mod channels;
pub mod download;
pub mod files;
pub mod hooks;
pub mod json;
pub mod m365_handoff;
pub mod m365_package;
pub mod m365_session;
pub mod media_nodes;
pub mod oidc;
pub mod openapi;
pub mod ops;
pub mod posts;
pub mod presence;
pub mod search;
pub mod teams;
pub mod user_search;
pub mod users;
pub mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use crate::AppState;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/methods", get(oidc::methods))
        .route("/auth/oidc/login", get(oidc::login))
        .route("/auth/oidc/callback", get(oidc::callback))
        .route("/m365/session", post(m365_session::session))
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
        .route(
            "/users/me/status",
            get(presence::mine).put(presence::set_mine),
        )
        .route("/users/status", get(presence::statuses))
        .route("/users/search", get(user_search::search))
        .route("/users/{id}", get(users::get))
        .route("/users/{id}/disable", post(users::disable))
        .route("/users/{id}/enable", post(users::enable))
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
            "/channels/{id}/call",
            get(calls::in_channel).post(calls::start_or_join),
        )
        .route("/calls/{id}", get(calls::get))
        .route(
            "/calls/{id}/sessions/{session}",
            axum::routing::patch(calls::change).delete(calls::leave),
        )
        .route(
            "/calls/{id}/sessions/{session}/host",
            post(calls::make_host),
        )
        .route("/calls/{id}/mute-others", post(calls::mute_others))
        .route("/calls/{id}/end", post(calls::end))
        .route("/calls/{id}/decline", post(calls::decline))
        .route("/calls/{id}/reactions", post(calls::react))
        .route("/calls/{id}/jobs", post(call_bots::start))
        .route("/calls/{id}/jobs/{kind}/stop", post(call_bots::stop))
        .route(
            "/calls/{id}/bot",
            get(call_bots::view).post(call_bots::join),
        )
        .route("/calls/{id}/captions", post(call_bots::caption))
        .route(
            "/calls/{id}/results",
            post(call_bots::results).layer(DefaultBodyLimit::max(call_bots::body_limit(&state))),
        )
        .route(
            "/channels/{id}/files",
            post(files::upload).layer(DefaultBodyLimit::max(files::body_limit(&state))),
        )
        .route("/files/{id}", get(download::get))
        .route("/files/{id}/thumbnail", get(download::thumbnail))
        .route("/files/{id}/preview", get(download::preview))
        .route("/files/{id}/link", get(files::link))
        .route("/files/{id}/content", get(download::content))
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
        .route("/search/posts", get(search::posts))
        .route("/search/files", get(search::files))
        .route("/websocket", get(crate::ws::socket::upgrade))
        .route("/openapi.json", get(openapi::document))
        .route("/m365/tab-config", get(crate::m365::tab::config))
        .route("/m365/app-package", get(m365_package::download))
        .route("/m365/handoff", post(m365_handoff::create))
        .route("/m365/handoff/redeem", post(m365_handoff::redeem))
        .route("/admin/media-nodes", get(media_nodes::list))
        .route("/bots", get(bots::list).post(bots::create))
        .route("/bots/{id}", get(bots::get))
        .route("/bots/{id}/disable", post(bots::disable))
        .route("/bots/{id}/enable", post(bots::enable))
        .route("/bots/{id}/tokens", post(bots::create_token))
        .route(
            "/channels/{id}/incoming-webhooks",
            get(webhooks::list_incoming).post(webhooks::create_incoming),
        )
        .route(
            "/incoming-webhooks/{id}",
            get(webhooks::get_incoming)
                .put(webhooks::update_incoming)
                .delete(webhooks::delete_incoming),
        )
        .route(
            "/incoming-webhooks/{id}/secret",
            post(webhooks::regenerate_secret),
        )
        .route(
            "/teams/{id}/outgoing-webhooks",
            get(webhooks::list_outgoing).post(webhooks::create_outgoing),
        )
        .route(
            "/outgoing-webhooks/{id}",
            get(webhooks::get_outgoing)
                .put(webhooks::update_outgoing)
                .delete(webhooks::delete_outgoing),
        )
        .fallback(ops::not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(crate::web::index))
        .route("/app/{file}", get(crate::web::file))
        .route("/app/vendor/{file}", get(crate::web::vendor))
        .route("/m365/tab", get(crate::m365::tab::page))
        .route("/m365/app", get(crate::m365::tab::app))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/hooks/{secret}", post(hooks::incoming))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}
