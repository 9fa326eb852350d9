//! The web client's ways into conversations, in headless Chromium against
//! a real control (in process, SQLite in a temporary folder, on loopback
//! in a private network namespace). Scenarios: tests/browser/chat.mjs.
//!
//! - `channels`: one user creates a public channel from the keyboard and
//!   is refused a second of the same name; another, 320 px wide, finds it
//!   in Browse, joins, and they talk, with an @mention completed from the
//!   keyboard; a private channel gets the second
//!   user through the people picker; leaving puts the channel back in
//!   Browse. What the pages did is checked against control's own state.
//! - `direct_and_group`: a direct message started by typing part of a
//!   display name, its unread badge at the 320 px page (exactly 1: the
//!   post that follows the new channel is counted once, not also by the
//!   reload the new channel causes) and the reply; a group message of
//!   three, 2 unread at the third page.
//! - `files_and_search`: an image attached and sent through the page; the
//!   other user sees its thumbnail and downloads the same bytes; search
//!   from the top bar and Jump to a post far back in another channel.
//! - `edit_delete_history`: one user edits a post from the keyboard
//!   (Escape cancels, Enter saves) and deletes another after confirming;
//!   the other sees both live. A channel of 100 posts opens on the latest
//!   page, and "Load older messages" brings the first without moving what
//!   was on screen.
//!
//! Screenshots go to tests/artifacts/browser_chat_*.png. Skipped (ignored)
//! without node, Chromium or tests/browser/node_modules, unless
//! ENCLAVE_REQUIRE_BROWSER=1.

use axum::http::Method;
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};
use tests::browser;
use tests::browser_gate::Gate;

#[path = "web/control.rs"]
mod server;

use server::Control;

fn main() {
    let gate = Gate::enter("browser_chat");
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let trials = vec![
        gate.browser("channels", channels),
        gate.browser("direct_and_group", direct_and_group),
        gate.browser("files_and_search", files_and_search),
        gate.browser("edit_delete_history", edit_delete_history),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn check(ok: bool, what: String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into()) }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn texts(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

fn channels() -> Result<(), Failed> {
    let c = Control::start()?;
    let ada = c.person("ada", "Ada Lovelace")?;
    let bruno = c.person("bruno", "Bruno Bell")?;
    let (team, _) = c.team_and_channels(&[&ada, &bruno], &["town"])?;
    let shot = browser::artifacts_dir().join("browser_chat_channels_320.png");
    let r = browser::run_scenario(&json!({
        "scenario": "chat-channels",
        "base": c.base,
        "users": [ada.login(), bruno.login()],
        "channel_title": "Launch plans",
        "private_title": "Secret ops",
        "search_b": "bel",
        "name_b": bruno.display_name,
        "mention_typed": "bru",
        "mention_username": bruno.username,
        "timeout_ms": 120_000,
        "screenshot": shot,
    }))?;
    eprintln!("channels: {r}");
    check(
        texts(&r["mention_options"]) == ["@bruno Bruno Bell"]
            && r["mention_inserted"] == "ping @bruno "
            && r["mention_seen_ms"].is_i64(),
        format!(
            "@mention: offered {}, inserted {}",
            r["mention_options"], r["mention_inserted"]
        ),
    )?;
    check(
        r["create_focus"] == "new-channel-title",
        format!("the dialog focuses its first field: {}", r["create_focus"]),
    )?;
    check(
        r["slug"] == "launch-plans",
        format!("address {}", r["slug"]),
    )?;
    check(r["public_by_default"] == true, "public by default".into())?;
    check(
        r["create_dialog_closed"] == true && r["created_in_sidebar"] == true,
        format!(
            "created: dialog closed {}, in the sidebar {}",
            r["create_dialog_closed"], r["created_in_sidebar"]
        ),
    )?;
    check(
        text(&r["name_taken_message"]).contains("“launch-plans” already exists"),
        format!("refusal: {}", r["name_taken_message"]),
    )?;
    check(
        r["name_taken_focus"] == "new-channel-name",
        format!("focus after the refusal: {}", r["name_taken_focus"]),
    )?;
    check(r["escape_closes_dialog"] == true, "Escape".into())?;
    check(
        r["narrow_dialog_fits"] == true && r["page_fits_320"] == true,
        format!(
            "at 320 px: dialog {}, page {}",
            r["narrow_dialog_fits"], r["page_fits_320"]
        ),
    )?;
    let listed = texts(&r["browse_listed"]);
    check(
        listed.len() == 1 && listed[0].contains("Launch plans"),
        format!("Browse lists only the channel not joined: {listed:?}"),
    )?;
    check(
        r["narrow_sidebar_closed_after_join"] == true,
        "the narrow sidebar closes on join".into(),
    )?;
    check(r["private_icon"] == "🔒", format!("{}", r["private_icon"]))?;
    check(
        texts(&r["add_options"]) == ["Bruno Bell @bruno"],
        format!("people found for 'bel': {}", r["add_options"]),
    )?;
    let members = texts(&r["private_members"]);
    check(
        members == ["Ada Lovelace", "Bruno Bell"],
        format!("private channel members: {members:?}"),
    )?;
    check(
        r["left_gone_from_sidebar"] == true && r["left_listed_again"] == true,
        "after leaving: gone from the sidebar, back in Browse".into(),
    )?;

    // What the pages did, in control's own state.
    let list = c.call(
        Method::GET,
        &format!("/teams/{team}/channels"),
        &ada,
        json!(null),
    );
    let list = list.map_err(|e| format!("{e:#}"))?;
    let by_name = |n: &str| {
        list.as_array()
            .into_iter()
            .flatten()
            .find(|ch| ch["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let launch = by_name("launch-plans");
    let secret = by_name("secret-ops");
    check(
        launch["kind"] == "open" && launch["display_name"] == "Launch plans",
        format!("{launch}"),
    )?;
    check(secret["kind"] == "private", format!("{secret}"))?;
    let in_launch = c.call(
        Method::GET,
        &format!("/channels/{}/members", text(&launch["id"])),
        &ada,
        json!(null),
    )?;
    check(
        in_launch == json!([ada.id]),
        format!("bruno left launch-plans: {in_launch}"),
    )?;
    let mut in_secret: Vec<String> = serde_json::from_value(c.call(
        Method::GET,
        &format!("/channels/{}/members", text(&secret["id"])),
        &ada,
        json!(null),
    )?)
    .map_err(|e| e.to_string())?;
    in_secret.sort();
    let mut want = vec![ada.id.clone(), bruno.id.clone()];
    want.sort();
    check(
        in_secret == want,
        format!("secret-ops members {in_secret:?}"),
    )?;
    check(
        shot.is_file(),
        format!("no screenshot at {}", shot.display()),
    )?;
    eprintln!(
        "created in {} ms, joined in {} ms, messages {} / {} ms; screenshot {}",
        r["create_ms"],
        r["join_ms"],
        r["a_to_b_ms"],
        r["b_to_a_ms"],
        shot.display()
    );
    Ok(())
}

fn direct_and_group() -> Result<(), Failed> {
    let c = Control::start()?;
    let ada = c.person("ada", "Ada Lovelace")?;
    let bruno = c.person("bruno", "Bruno Bell")?;
    let cleo = c.person("cleo", "Cleo Chen")?;
    c.team_and_channels(&[&ada, &bruno, &cleo], &["town"])?;
    let shot = browser::artifacts_dir().join("browser_chat_direct_320.png");
    let r = browser::run_scenario(&json!({
        "scenario": "chat-direct",
        "base": c.base,
        "users": [ada.login(), bruno.login(), cleo.login()],
        "search_b": "bel",
        "search_c": "chen",
        "name_a": ada.display_name,
        "name_b": bruno.display_name,
        "name_c": cleo.display_name,
        "timeout_ms": 120_000,
        "screenshot": shot,
    }))?;
    eprintln!("direct: {r}");
    check(
        texts(&r["dm_options"]) == ["Bruno Bell @bruno"],
        format!("people found for 'bel': {}", r["dm_options"]),
    )?;
    check(
        text(&r["dm_badge_text"]).starts_with("1,"),
        format!("unread badge at the 320 px page: {}", r["dm_badge_text"]),
    )?;
    check(
        r["dm_label_at_b"] == "Ada Lovelace",
        format!(
            "the direct message is named for its other person: {}",
            r["dm_label_at_b"]
        ),
    )?;
    check(r["dm_badge_cleared"] == true, "badge cleared".into())?;
    check(
        r["group_is_new"] == true
            && texts(&r["group_picked"]).len() == 2
            && text(&r["group_label_at_c"]).contains("Ada Lovelace")
            && text(&r["group_label_at_c"]).contains("Bruno Bell"),
        format!(
            "group: picked {}, named at cleo's {}",
            r["group_picked"], r["group_label_at_c"]
        ),
    )?;
    check(
        text(&r["group_badge_at_b"]).starts_with("2,"),
        format!("group badge at bruno's: {}", r["group_badge_at_b"]),
    )?;
    let dm = text(&r["dm_hash"]).trim_start_matches("#/c/").to_owned();
    let members = c.call(
        Method::GET,
        &format!("/channels/{dm}/members"),
        &bruno,
        json!(null),
    )?;
    check(
        texts(&members).len() == 2 && texts(&members).contains(&ada.id.as_str()),
        format!("direct channel members {members}"),
    )?;
    check(
        shot.is_file(),
        format!("no screenshot at {}", shot.display()),
    )?;
    eprintln!(
        "badge after {} ms, reply after {} ms; group badge {} ms, reply {} ms; screenshot {}",
        r["dm_badge_ms"],
        r["dm_reply_ms"],
        r["group_badge_ms"],
        r["group_reply_at_a_ms"],
        shot.display()
    );
    Ok(())
}

fn files_and_search() -> Result<(), Failed> {
    let c = Control::start()?;
    let ada = c.person("ada", "Ada Lovelace")?;
    let bruno = c.person("bruno", "Bruno Bell")?;
    let (_, ids) = c.team_and_channels(&[&ada, &bruno], &["town", "general"])?;
    // The post to find, then enough after it that it starts off screen.
    let target = c.call(
        Method::POST,
        &format!("/channels/{}/posts", ids[1]),
        &ada,
        json!({"message": "the quartz report is ready"}),
    )?;
    let target = text(&target["id"]).to_owned();
    for i in 0..40 {
        c.call(
            Method::POST,
            &format!("/channels/{}/posts", ids[1]),
            &ada,
            json!({"message": format!("later message {i}")}),
        )?;
    }
    let shot = browser::artifacts_dir().join("browser_chat_files_search.png");
    let r = browser::run_scenario(&json!({
        "scenario": "chat-files",
        "base": c.base,
        "users": [ada.login(), bruno.login()],
        "channel": "town",
        "query": "quartz",
        "post_id": target,
        "timeout_ms": 120_000,
        "screenshot": shot,
    }))?;
    eprintln!("files: {r}");
    check(r["chosen"] == "map.png", format!("chosen {}", r["chosen"]))?;
    let thumb = &r["thumbnail"];
    check(
        thumb["width"]
            .as_i64()
            .is_some_and(|w| (1..=120).contains(&w))
            && text(&thumb["src"]).ends_with("/thumbnail"),
        format!("thumbnail {thumb}"),
    )?;
    check(
        r["download_same"] == true && r["download_name"] == "map.png",
        format!(
            "download {} ({} bytes, same {})",
            r["download_name"], r["download_bytes"], r["download_same"]
        ),
    )?;
    check(
        r["jump_channel"] == "general"
            && r["jump_hash"] == format!("#/p/{target}")
            && r["jump_focused"] == true
            && r["jump_in_view"] == true
            && r["jump_text"] == "the quartz report is ready",
        format!(
            "jump: channel {}, hash {}, focused {}, in view {}, text {}",
            r["jump_channel"], r["jump_hash"], r["jump_focused"], r["jump_in_view"], r["jump_text"]
        ),
    )?;
    check(
        shot.is_file(),
        format!("no screenshot at {}", shot.display()),
    )?;
    eprintln!(
        "file post after {} ms; search {} ms, jump {} ms; screenshot {}",
        r["file_post_ms"],
        r["search_ms"],
        r["jump_ms"],
        shot.display()
    );
    Ok(())
}

/// More than the web client's page (60): the first post is one "Load
/// older messages" away.
const HISTORY_POSTS: usize = 100;

fn edit_delete_history() -> Result<(), Failed> {
    let c = Control::start()?;
    let ada = c.person("ada", "Ada Lovelace")?;
    let bruno = c.person("bruno", "Bruno Bell")?;
    let (_, ids) = c.team_and_channels(&[&ada, &bruno], &["town", "archive"])?;
    for i in 0..HISTORY_POSTS {
        c.call(
            Method::POST,
            &format!("/channels/{}/posts", ids[1]),
            &ada,
            json!({"message": format!("history {i}")}),
        )?;
    }
    let shot = browser::artifacts_dir().join("browser_chat_history.png");
    let r = browser::run_scenario(&json!({
        "scenario": "chat-posts",
        "base": c.base,
        "users": [ada.login(), bruno.login()],
        "channel": "town",
        "history": "archive",
        "first_text": "history 0",
        "last_text": format!("history {}", HISTORY_POSTS - 1),
        "timeout_ms": 120_000,
        "screenshot": shot,
    }))?;
    eprintln!("posts: {r}");
    check(
        !texts(&r["actions_at_b"])
            .iter()
            .any(|a| *a == "Edit" || *a == "Delete"),
        format!(
            "another's post offers no edit or delete: {}",
            r["actions_at_b"]
        ),
    )?;
    check(
        r["edit_box_focused"] == true
            && text(&r["cancelled_text"]).starts_with("draft plan")
            && !text(&r["cancelled_text"]).contains("not this")
            && r["cancel_focus_on_edit"] == true
            && r["thread_still_closed"] == true,
        format!(
            "Escape cancels: box focused {}, text {}, focus back {}",
            r["edit_box_focused"], r["cancelled_text"], r["cancel_focus_on_edit"]
        ),
    )?;
    check(
        text(&r["edited_text_at_a"]).starts_with("revised plan")
            && r["edited_still_at_b"] == r["edited_text_at_a"]
            && r["edited_marker_at_b"] == "(edited)"
            && r["save_focus_on_edit"] == true,
        format!(
            "edit: at A {}, at B {} {}, focus back {}",
            r["edited_text_at_a"],
            r["edited_still_at_b"],
            r["edited_marker_at_b"],
            r["save_focus_on_edit"]
        ),
    )?;
    check(
        r["confirm_title"] == "Delete this message?"
            && r["confirm_focus"] == "Cancel"
            && r["deleted_at_a"] == true,
        format!(
            "delete asks first: {}, focus on {}",
            r["confirm_title"], r["confirm_focus"]
        ),
    )?;
    // What the pages did, in control's own state.
    let edited = c.call(
        Method::GET,
        &format!("/posts/{}", text(&r["edited_id"])),
        &bruno,
        json!(null),
    )?;
    check(
        edited["message"] == r["edited_text_at_a"] && edited["edited_at"].is_i64(),
        format!("the edit is stored: {edited}"),
    )?;
    let town = c.call(
        Method::GET,
        &format!("/channels/{}/posts", ids[0]),
        &bruno,
        json!(null),
    )?;
    let deleted = text(&r["deleted_id"]);
    check(
        !deleted.is_empty()
            && town
                .as_array()
                .is_some_and(|a| a.iter().all(|p| p["id"] != deleted)),
        format!("the deleted post is gone from the channel: {town}"),
    )?;
    check(
        r["history_first_page"] == 60 && r["first_shown_before"] == 0,
        format!(
            "the long channel opens on its latest 60: {} posts, first shown {}",
            r["history_first_page"], r["first_shown_before"]
        ),
    )?;
    check(
        r["opened_at_newest"] == true && r["page_scrolls"] == false,
        format!(
            "the long channel opens with its newest post in view ({}) and the page itself does not scroll ({})",
            r["opened_at_newest"], r["page_scrolls"]
        ),
    )?;
    check(
        r["older_pages"] == 1
            && r["history_total"] == HISTORY_POSTS
            && r["button_gone"] == true
            && r["history_first_text"] == "history 0"
            && r["history_order_ok"] == true,
        format!(
            "load older: {} pages, {} posts, button gone {}, first {}, in order {}",
            r["older_pages"],
            r["history_total"],
            r["button_gone"],
            r["history_first_text"],
            r["history_order_ok"]
        ),
    )?;
    check(
        r["anchor_shift_px"].as_f64().is_some_and(|d| d < 2.0),
        format!("the post at the top moved {} px", r["anchor_shift_px"]),
    )?;
    check(
        shot.is_file(),
        format!("no screenshot at {}", shot.display()),
    )?;
    eprintln!(
        "edit seen after {} ms, delete after {} ms; older page in {} ms; screenshot {}",
        r["edit_seen_ms"],
        r["delete_seen_ms"],
        r["older_ms"],
        shot.display()
    );
    Ok(())
}
