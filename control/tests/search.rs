//! Search: words, phrases, exclusions, prefixes, every filter, paging,
//! edits and deletes, file names, hostile queries, and that nobody finds
//! what they may not read. Each test runs on SQLite and on PostgreSQL.

mod common;

use axum::http::{Method, StatusCode};
use common::{Resp, T0, TestApp, TestUser};
use control::clock::Clock as _;
use control::db::users::SystemRole;
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

/// Percent-encodes a query parameter value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn search(app: &TestApp, who: &TestUser, what: &str, q: &str, extra: &str) -> Resp {
    app.get(&format!("/api/v1/search/{what}?q={}{extra}", enc(q)), who)
        .await
}

/// The messages of the posts `who` finds with `q`, newest first.
async fn found(app: &TestApp, who: &TestUser, q: &str) -> Vec<String> {
    let r = search(app, who, "posts", q, "&per_page=200").await;
    assert_eq!(r.status, StatusCode::OK, "{q:?}: {:?}", r.body);
    r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["post"]["message"].as_str().unwrap().to_owned())
        .collect()
}

/// A 400 `bad_request`; returns its message.
async fn refused(app: &TestApp, who: &TestUser, what: &str, q: &str, extra: &str) -> String {
    let r = search(app, who, what, q, extra).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{q:?} {extra:?}: {:?}",
        r.body
    );
    r.body["message"].as_str().unwrap().to_owned()
}

async fn join(app: &TestApp, ch: &str, who: &TestUser) {
    let r = app
        .post(&format!("/api/v1/channels/{ch}/join"), who, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
}

async fn dm(app: &TestApp, a: &TestUser, b: &TestUser) -> String {
    let r = app
        .post("/api/v1/channels/direct", a, json!({"user_id": b.id}))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn words_phrases_exclusions_prefixes(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let team = app.team("eng", &alice, &[]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    for m in [
        "the release plan is ready",
        "plan the release party",
        "draft release notes",
        "prerelease build failed",
        "Report: Q3-budget_final.xlsx attached",
        "Café au lait",
    ] {
        app.say(&ch, &alice, m).await;
    }
    let newest_first = [
        "draft release notes",
        "plan the release party",
        "the release plan is ready",
    ];
    assert_eq!(found(&app, &alice, "release").await, newest_first);
    assert_eq!(found(&app, &alice, "RELEASE").await, newest_first);
    assert_eq!(
        found(&app, &alice, "release plan").await,
        &newest_first[1..]
    );
    assert_eq!(
        found(&app, &alice, "\"release plan\"").await,
        ["the release plan is ready"]
    );
    assert_eq!(
        found(&app, &alice, "release -draft -\"release party\"").await,
        ["the release plan is ready"]
    );
    assert_eq!(found(&app, &alice, "rel*").await, newest_first);
    assert_eq!(
        found(&app, &alice, "pre*").await,
        ["prerelease build failed"]
    );
    assert!(
        found(&app, &alice, "releas").await.is_empty(),
        "whole words"
    );
    // Punctuation separates words the same way on both databases.
    for q in ["budget", "q3-budget", "budget_final.xlsx", "xlsx", "report"] {
        assert_eq!(
            found(&app, &alice, q).await,
            ["Report: Q3-budget_final.xlsx attached"],
            "{q}"
        );
    }
    assert_eq!(found(&app, &alice, "café").await, ["Café au lait"]);
    // The hit says where to open it.
    let r = search(&app, &alice, "posts", "party", "").await;
    let hit = &r.body["results"][0];
    assert_eq!(hit["channel"]["id"], ch.as_str());
    assert_eq!(hit["channel"]["team_id"], team.as_str());
    assert_eq!(hit["channel"]["name"], "general");
    assert_eq!(hit["channel"]["kind"], "open");
    assert_eq!(hit["post"]["channel_id"], ch.as_str());
}

async fn filters(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob]).await;
    let general = app.channel(&team, "general", "open", &alice).await;
    let ops = app.channel(&team, "ops", "open", &alice).await;
    join(&app, &general, &bob).await;
    join(&app, &ops, &bob).await;
    let direct = dm(&app, &alice, &bob).await;
    // Day 0 is 2026-01-01 (UTC).
    app.say(&general, &alice, "deploy one").await;
    app.clock.advance_ms(DAY);
    app.say(&ops, &bob, "deploy two").await;
    app.clock.advance_ms(DAY);
    app.say(&direct, &bob, "deploy three").await;
    app.clock.advance_ms(DAY);
    let root = app.say(&general, &bob, "deploy four").await;

    assert_eq!(
        found(&app, &alice, "deploy from:bob").await,
        ["deploy four", "deploy three", "deploy two"]
    );
    assert_eq!(
        found(&app, &alice, "from:@alice deploy").await,
        ["deploy one"]
    );
    assert_eq!(
        found(&app, &alice, "deploy from:alice from:bob")
            .await
            .len(),
        4,
        "several from: widen"
    );
    assert_eq!(
        found(&app, &alice, "deploy in:general").await,
        ["deploy four", "deploy one"]
    );
    assert_eq!(
        found(&app, &alice, &format!("deploy in:{ops}")).await,
        ["deploy two"]
    );
    assert_eq!(
        found(&app, &alice, "deploy in:ops in:general").await.len(),
        3
    );
    assert_eq!(found(&app, &alice, "in:@bob").await, ["deploy three"]);
    assert_eq!(found(&app, &bob, "in:@alice").await, ["deploy three"]);
    assert_eq!(
        found(&app, &alice, "deploy in:general from:bob").await,
        ["deploy four"]
    );
    // Filters alone search too.
    assert_eq!(found(&app, &alice, "from:alice").await, ["deploy one"]);
    // Dates: before excludes the day, after starts the day after, on is the day.
    assert_eq!(
        found(&app, &alice, "deploy before:2026-01-02").await,
        ["deploy one"]
    );
    assert_eq!(
        found(&app, &alice, "deploy after:2026-01-02").await,
        ["deploy four", "deploy three"]
    );
    assert_eq!(
        found(&app, &alice, "deploy on:2026-01-02").await,
        ["deploy two"]
    );
    assert_eq!(
        found(&app, &alice, "after:2026-01-01 before:2026-01-04").await,
        ["deploy three", "deploy two"]
    );
    // Days follow the searcher's time zone: one hour west of UTC, the
    // first post (2026-01-01 00:00 UTC) was written on 2025-12-31.
    assert!(found(&app, &alice, "deploy on:2025-12-31").await.is_empty());
    for (q, expect) in [
        ("deploy on:2025-12-31", vec!["deploy one"]),
        // "deploy two", 2026-01-02 00:00 UTC, is 23:00 on 2026-01-01 there.
        ("deploy on:2026-01-01", vec!["deploy two"]),
    ] {
        let r = search(&app, &alice, "posts", q, "&time_zone_offset=-3600").await;
        let got: Vec<&str> = r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["post"]["message"].as_str().unwrap())
            .collect();
        assert_eq!(got, expect, "{q}");
    }
    // Replies carry their thread.
    let r = app
        .post(
            &format!("/api/v1/channels/{general}/posts"),
            &alice,
            json!({"message": "rollback plan", "root_id": root["id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = search(&app, &bob, "posts", "rollback", "").await;
    assert_eq!(r.body["results"][0]["post"]["root_id"], root["id"]);

    // Bad filters get precise 400s and find nothing.
    let cases: &[(&str, &str)] = &[
        ("deploy from:nobody", "from:nobody names no user"),
        (
            "deploy in:nowhere",
            "in:nowhere names no channel you are a member of",
        ),
        ("in:@nobody", "in:@nobody names no direct channel of yours"),
        (
            "before:2026-02-30",
            "before:2026-02-30 is not a day; write YYYY-MM-DD",
        ),
        (
            "on:yesterday",
            "on:yesterday is not a day; write YYYY-MM-DD",
        ),
        ("after:", "after: needs a value, e.g. after:2026-03-01"),
        (
            "deploy -from:bob",
            "-from: is not supported; filters cannot be excluded",
        ),
        ("ext:pdf", "ext: applies to file searches (/search/files)"),
        (
            "-deploy",
            "the query has no word, phrase or filter to search for",
        ),
    ];
    for (q, msg) in cases {
        assert_eq!(refused(&app, &alice, "posts", q, "").await, *msg, "{q}");
    }
    for extra in [
        "&per_page=0",
        "&per_page=201",
        "&page=-1",
        "&page=100&per_page=200",
        "&page=x",
        "&colour=red",
        "&time_zone_offset=90000",
    ] {
        refused(&app, &alice, "posts", "deploy", extra).await;
    }
    let r = app.get("/api/v1/search/posts", &alice).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "q is required");
    let r = app
        .call(Method::GET, "/api/v1/search/posts?q=deploy", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn only_what_the_searcher_may_read(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let carol = app.user("carol", SystemRole::User).await;
    let dave = app.user("dave", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob, &carol]).await;
    let other_team = app.team("ops", &dave, &[]).await;
    let general = app.channel(&team, "general", "open", &alice).await;
    join(&app, &general, &bob).await;
    join(&app, &general, &carol).await;
    let secret = app.channel(&team, "secret", "private", &alice).await;
    let r = app
        .post(
            &format!("/api/v1/channels/{secret}/members"),
            &alice,
            json!({"user_id": bob.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // An open channel carol has not joined: readable once joined, not before.
    let lobby = app.channel(&team, "lobby", "open", &alice).await;
    let direct = dm(&app, &alice, &bob).await;
    let foreign = app.channel(&other_team, "general", "open", &dave).await;
    // A millisecond apart: posts of different channels may share a time,
    // and the expected lists are newest first.
    for (ch, who, m) in [
        (&general, &alice, "zebra public"),
        (&secret, &alice, "zebra private"),
        (&lobby, &alice, "zebra lobby"),
        (&direct, &bob, "zebra direct"),
        (&foreign, &dave, "zebra foreign"),
    ] {
        app.say(ch, who, m).await;
        app.clock.advance_ms(1);
    }

    assert_eq!(
        found(&app, &alice, "zebra").await,
        [
            "zebra direct",
            "zebra lobby",
            "zebra private",
            "zebra public"
        ]
    );
    // carol: every way of asking finds only the open channel she is in.
    for q in [
        "zebra",
        "zeb*",
        "\"zebra private\"",
        "zebra -public",
        "from:alice",
        "from:bob",
        "on:2026-01-01",
        "after:2025-12-01",
        "-public from:alice",
    ] {
        let got = found(&app, &carol, q).await;
        assert!(
            got.iter().all(|m| m == "zebra public"),
            "carol searching {q:?} found {got:?}"
        );
    }
    // Naming a channel she is not in answers exactly as for one that does
    // not exist.
    for (q, name) in [
        (format!("in:{secret}"), secret.clone()),
        (format!("in:{direct}"), direct.clone()),
        (format!("in:{foreign}"), foreign.clone()),
        ("in:secret".into(), "secret".into()),
        ("in:lobby".into(), "lobby".into()),
        ("in:nosuchchannel".into(), "nosuchchannel".into()),
    ] {
        assert_eq!(
            refused(&app, &carol, "posts", &q, "").await,
            format!("in:{name} names no channel you are a member of")
        );
    }
    assert_eq!(
        refused(&app, &carol, "posts", "in:@bob", "").await,
        "in:@bob names no direct channel of yours"
    );
    // Another team: its id is not found, its channels are not searched.
    let r = search(
        &app,
        &carol,
        "posts",
        "zebra",
        &format!("&team_id={other_team}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(found(&app, &dave, "zebra").await, ["zebra foreign"]);
    // team_id narrows to the team's channels plus direct ones.
    let r = search(&app, &alice, "posts", "zebra", &format!("&team_id={team}")).await;
    assert_eq!(r.body["results"].as_array().unwrap().len(), 4);
    let r = search(
        &app,
        &dave,
        "posts",
        "zebra",
        &format!("&team_id={other_team}"),
    )
    .await;
    assert_eq!(r.body["results"].as_array().unwrap().len(), 1);

    join(&app, &lobby, &carol).await;
    assert_eq!(
        found(&app, &carol, "zebra").await,
        ["zebra lobby", "zebra public"]
    );
    // Leaving a channel ends finding in it.
    let r = app
        .post(&format!("/api/v1/channels/{secret}/leave"), &bob, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(
        found(&app, &bob, "zebra").await,
        ["zebra direct", "zebra public"]
    );
}

async fn edits_and_deletes(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let team = app.team("eng", &alice, &[]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    let p = app.say(&ch, &alice, "original wording here").await;
    let other = app.say(&ch, &alice, "untouched wording").await;
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/posts/{}", id(&p)),
            Some(&alice),
            Some(json!({"message": "revised wording here"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(found(&app, &alice, "original").await.is_empty());
    assert_eq!(
        found(&app, &alice, "revised").await,
        ["revised wording here"]
    );
    assert_eq!(found(&app, &alice, "wording").await.len(), 2);
    assert_eq!(
        found(&app, &alice, "wording -revised").await,
        ["untouched wording"]
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{}", id(&p)),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    for q in [
        "revised",
        "original",
        "wording here",
        "from:alice",
        "-untouched in:general",
    ] {
        let got = found(&app, &alice, q).await;
        assert!(
            got.iter().all(|m| m == "untouched wording"),
            "{q:?} found a deleted post: {got:?}"
        );
    }
    assert_eq!(found(&app, &alice, "wording").await, ["untouched wording"]);
    // The index stays keyed to the right rows after the database is
    // compacted (SQLite may renumber implicit rowids on VACUUM).
    sqlx::query("VACUUM")
        .execute(&app.state.db.pool)
        .await
        .expect("vacuum");
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/posts/{}", id(&other)),
            Some(&alice),
            Some(json!({"message": "touched after all"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(found(&app, &alice, "wording").await.is_empty());
    assert_eq!(found(&app, &alice, "touched").await, ["touched after all"]);
}

async fn hostile_queries(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let team = app.team("eng", &alice, &[]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    for m in [
        "meet NEAR the tree",
        "not now",
        "cats AND dogs",
        "it's \"quoted\" (really)",
    ] {
        app.say(&ch, &alice, m).await;
    }
    // Operator words of both engines are plain words.
    assert_eq!(found(&app, &alice, "NEAR(").await, ["meet NEAR the tree"]);
    assert_eq!(
        found(&app, &alice, "near(the").await,
        ["meet NEAR the tree"]
    );
    // Punctuation inside a token makes a phrase; spaces make separate words.
    assert_eq!(found(&app, &alice, "near(tree").await, Vec::<String>::new());
    assert_eq!(found(&app, &alice, "NOT").await, ["not now"]);
    assert_eq!(found(&app, &alice, "AND").await, ["cats AND dogs"]);
    assert_eq!(
        found(&app, &alice, "cats OR birds").await,
        Vec::<String>::new()
    );
    assert_eq!(found(&app, &alice, "tree:*").await, ["meet NEAR the tree"]);
    assert_eq!(
        found(&app, &alice, "tree & !meet").await,
        ["meet NEAR the tree"]
    );
    assert_eq!(
        found(&app, &alice, "tree | meet").await,
        ["meet NEAR the tree"]
    );
    assert_eq!(found(&app, &alice, "tree|meet").await, Vec::<String>::new());
    assert_eq!(
        found(&app, &alice, "it's").await,
        ["it's \"quoted\" (really)"]
    );
    assert_eq!(
        found(&app, &alice, "\"quoted").await,
        ["it's \"quoted\" (really)"]
    );
    assert_eq!(
        found(&app, &alice, "(really)").await,
        ["it's \"quoted\" (really)"]
    );
    assert_eq!(
        found(&app, &alice, "message:now").await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(&app, &alice, "x'); DROP TABLE posts;--").await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(&app, &alice, "{tree}^2 \\now").await,
        Vec::<String>::new()
    );
    // Nothing left to search for is a 400, never a 500.
    for q in [
        "\"", "*", ":", "&|!", "'", "\\", "^", "()", "-", "\"\"", "-\"\"", "NEAR(", "%", "\u{0}",
    ] {
        let r = search(&app, &alice, "posts", q, "").await;
        assert!(
            r.status == StatusCode::OK || r.code() == "bad_request",
            "{q:?}: {} {:?}",
            r.status,
            r.body
        );
        let r = search(&app, &alice, "files", q, "").await;
        assert!(
            r.status == StatusCode::OK || r.code() == "bad_request",
            "{q:?}: {} {:?}",
            r.status,
            r.body
        );
    }
    assert_eq!(
        refused(&app, &alice, "posts", "&|!", "").await,
        "the query has no word, phrase or filter to search for"
    );
    refused(&app, &alice, "posts", &"x".repeat(1025), "").await;
    refused(&app, &alice, "posts", &"w ".repeat(17), "").await;
    // The posts are all still there.
    let r = app
        .get(&format!("/api/v1/channels/{ch}/posts"), &alice)
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 4);
}

async fn paging(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let team = app.team("eng", &alice, &[]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    for i in 0..25 {
        app.say(&ch, &alice, &format!("item number {i}")).await;
    }
    let mut seen = Vec::new();
    for (page, len, more) in [(0, 10, true), (1, 10, true), (2, 5, false), (3, 0, false)] {
        let r = search(
            &app,
            &alice,
            "posts",
            "item",
            &format!("&page={page}&per_page=10"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let hits = r.body["results"].as_array().unwrap();
        assert_eq!(
            (hits.len(), r.body["has_more"].as_bool()),
            (len, Some(more))
        );
        assert_eq!(
            (r.body["page"].as_i64(), r.body["per_page"].as_i64()),
            (Some(page), Some(10))
        );
        seen.extend(
            hits.iter()
                .map(|h| h["post"]["message"].as_str().unwrap().to_owned()),
        );
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("item number {i}")).collect();
    assert_eq!(seen, expected, "newest first, no overlap, nothing skipped");
    let r = search(&app, &alice, "posts", "item", "").await;
    assert_eq!(
        r.body["results"].as_array().unwrap().len(),
        20,
        "default page"
    );
}

/// Inserts file metadata the way the files API stores it.
async fn file(app: &TestApp, ch: &str, who: &TestUser, post: Option<&str>, name: &str) -> String {
    let id = control::db::new_id();
    sqlx::query(
        "INSERT INTO files (id, uploader_id, channel_id, post_id, name, mime_type, size_bytes, storage_key, created_at)
         VALUES ($1, $2, $3, $4, $5, 'application/octet-stream', 42, $6, $7)",
    )
    .bind(&id)
    .bind(&who.id)
    .bind(ch)
    .bind(post)
    .bind(name)
    .bind(format!("k/{id}"))
    .bind(app.clock.now_ms())
    .execute(&app.state.db.pool)
    .await
    .expect("file row");
    id
}

async fn file_names(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let carol = app.user("carol", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob, &carol]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    join(&app, &ch, &bob).await;
    let secret = app.channel(&team, "secret", "private", &alice).await;
    let root = app.say(&ch, &alice, "files attached").await;
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/posts"),
            &bob,
            json!({"message": "more", "root_id": root["id"]}),
        )
        .await;
    let reply = id(&r.body);
    let hidden = app.say(&secret, &alice, "secret files").await;
    let budget = file(
        &app,
        &ch,
        &alice,
        Some(id(&root).as_str()),
        "Q3-budget_final.xlsx",
    )
    .await;
    app.clock.advance_ms(DAY);
    let notes = file(&app, &ch, &bob, Some(reply.as_str()), "release notes.pdf").await;
    file(
        &app,
        &secret,
        &alice,
        Some(id(&hidden).as_str()),
        "budget secret.pdf",
    )
    .await;
    file(&app, &ch, &alice, None, "budget draft.pdf").await;

    let names = |r: &Resp| -> Vec<String> {
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["file"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = search(&app, &bob, "files", "budget", "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        names(&r),
        ["Q3-budget_final.xlsx"],
        "not the unposted draft, not secret"
    );
    let hit = &r.body["results"][0];
    assert_eq!(hit["file"]["id"], budget.as_str());
    assert_eq!(hit["file"]["post_id"], root["id"]);
    assert_eq!(hit["thread_root_id"], root["id"]);
    assert_eq!(hit["channel"]["id"], ch.as_str());
    let r = search(&app, &alice, "files", "budget", "").await;
    assert_eq!(names(&r), ["budget secret.pdf", "Q3-budget_final.xlsx"]);
    let r = search(&app, &bob, "files", "ext:pdf", "").await;
    assert_eq!(names(&r), ["release notes.pdf"]);
    assert_eq!(r.body["results"][0]["thread_root_id"], root["id"]);
    let r = search(&app, &bob, "files", "ext:XLSX ext:.pdf", "").await;
    assert_eq!(names(&r).len(), 2);
    let r = search(&app, &bob, "files", "from:bob", "").await;
    assert_eq!(names(&r), ["release notes.pdf"]);
    let r = search(&app, &bob, "files", "\"budget final\" in:general", "").await;
    assert_eq!(names(&r), ["Q3-budget_final.xlsx"]);
    let r = search(&app, &bob, "files", "rel* -budget", "").await;
    assert_eq!(names(&r), ["release notes.pdf"]);
    let r = search(&app, &bob, "files", "notes on:2026-01-02", "").await;
    assert_eq!(names(&r), ["release notes.pdf"]);
    let r = search(&app, &carol, "files", "budget", "").await;
    assert_eq!(
        names(&r),
        Vec::<String>::new(),
        "carol is in no channel with files"
    );
    assert_eq!(
        refused(&app, &bob, "files", "in:secret", "").await,
        "in:secret names no channel you are a member of"
    );
    assert_eq!(
        refused(&app, &bob, "files", "ext:p*f", "").await,
        "ext:p*f is not a valid file extension"
    );
    // A deleted file, or one whose post is deleted, is not found.
    sqlx::query("UPDATE files SET deleted_at = $2 WHERE id = $1")
        .bind(&notes)
        .bind(T0 + 2 * DAY)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let r = search(&app, &bob, "files", "notes", "").await;
    assert_eq!(names(&r), Vec::<String>::new());
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{}", id(&root)),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = search(&app, &bob, "files", "budget", "").await;
    assert_eq!(names(&r), Vec::<String>::new());
}

/// Uploads one file through the API; returns its id.
async fn upload(app: &TestApp, ch: &str, who: &TestUser, name: &str, data: &str) -> String {
    let boundary = "search-test-boundary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\
         Content-Type: application/pdf\r\n\r\n{data}\r\n--{boundary}--\r\n"
    );
    let r = app
        .send(
            axum::http::Request::builder()
                .method(Method::POST)
                .uri(format!("/api/v1/channels/{ch}/files"))
                .header("authorization", format!("Bearer {}", who.token))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(axum::body::Body::from(form))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    id(&r.body["file_infos"][0])
}

/// Files uploaded and attached through the API are found by name, with
/// the metadata posts show; an upload no post has taken is not, and a
/// deleted post takes its files out of the results.
async fn uploaded_files(mut app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    app.state.store = std::sync::Arc::new(control::storage::LocalStore::lazy(dir.path()));
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    join(&app, &ch, &bob).await;
    let posted = upload(&app, &ch, &alice, "Quarterly Report.pdf", "the report").await;
    upload(&app, &ch, &alice, "quarterly draft.pdf", "not yet").await;
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/posts"),
            &alice,
            json!({"message": "", "file_ids": [posted]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let post = id(&r.body);
    for who in [&alice, &bob] {
        let r = search(&app, who, "files", "quarterly", "").await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let hits = r.body["results"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0]["file"]["id"], posted.as_str());
        assert_eq!(hits[0]["file"]["name"], "Quarterly Report.pdf");
        assert_eq!(hits[0]["file"]["size"], "the report".len());
        assert_eq!(hits[0]["file"]["post_id"], post.as_str());
        assert_eq!(hits[0]["thread_root_id"], post.as_str());
    }
    // A found post carries its files, as in its channel's listing.
    let r = search(&app, &bob, "posts", "from:alice", "").await;
    assert_eq!(
        r.body["results"][0]["post"]["files"][0]["id"],
        posted.as_str()
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{post}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = search(&app, &bob, "files", "quarterly", "").await;
    assert_eq!(r.body["results"], json!([]));
}

on_both_databases!(
    uploaded_files,
    words_phrases_exclusions_prefixes,
    filters,
    only_what_the_searcher_may_read,
    edits_and_deletes,
    hostile_queries,
    paging,
    file_names,
);
