//! How long a search takes over many posts, on each database. Ignored by
//! default (it writes 100,000 posts); run it with
//!
//! ```sh
//! cargo test -p control --release --test search_scale -- --ignored --nocapture
//! ```
//!
//! `ENCLAVE_SEARCH_POSTS` changes the number of posts. It prints figures
//! and asserts only that each search finds what it should, never a time.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{Kind, T0, TestApp, TestUser};
use control::db::users::SystemRole;

const CHANNELS: usize = 100;
const WORDS_PER_POST: usize = 10;
const VOCABULARY: usize = 5000;
const BATCH: usize = 500;
const RUNS: usize = 21;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A word index, log-uniform: low indexes are common, high ones rare,
    /// roughly as words are in chat.
    fn word(&mut self) -> usize {
        ((VOCABULARY as f64).powf(self.unit()) as usize).saturating_sub(1)
    }
}

fn vocabulary() -> Vec<String> {
    const SYL: [&str; 20] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "do", "fa", "gu", "hi", "jo", "pe",
        "qu", "ri", "su", "ta", "zo",
    ];
    (0..VOCABULARY)
        .map(|i| {
            let mut w = String::from("w");
            let mut n = i;
            for _ in 0..3 {
                w.push_str(SYL[n % SYL.len()]);
                n /= SYL.len();
            }
            w
        })
        .collect()
}

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

async fn fill(app: &TestApp, posts: usize, channels: &[String], authors: &[&TestUser]) {
    let words = vocabulary();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut n = 0;
    while n < posts {
        let rows = BATCH.min(posts - n);
        let mut sql = String::from(
            "INSERT INTO posts (id, channel_id, user_id, message, created_at, updated_at) VALUES ",
        );
        for r in 0..rows {
            let b = r * 5;
            if r > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 5
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in n..n + rows {
            let message: Vec<&str> = (0..WORDS_PER_POST)
                .map(|_| words[rng.word()].as_str())
                .collect();
            q = q
                .bind(control::db::new_id())
                .bind(channels[i % channels.len()].clone())
                .bind(authors[i % authors.len()].id.clone())
                .bind(message.join(" "))
                .bind(T0 + i as i64 * 1000);
        }
        let mut tx = app.state.db.begin_write().await.expect("begin");
        q.execute(&mut *tx).await.expect("insert posts");
        tx.commit().await.expect("commit");
        n += rows;
    }
    if app.kind == Kind::Postgres {
        // A live server's autovacuum analyzes a table that grew this much
        // within a minute. Right after the bulk insert PostgreSQL has no
        // statistics yet, takes posts for a tiny table and runs the GIN scan
        // once per channel: seconds per search that no server would see.
        // (SQLite gathers none unless asked; its plans must not need them.)
        sqlx::query("ANALYZE posts, channels, channel_members")
            .execute(&app.state.db.pool)
            .await
            .expect("analyze");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:?}: wrote {posts} posts (indexed as written) in {secs:.1} s, {:.0} posts/s",
        app.kind,
        posts as f64 / secs
    );
}

async fn measure(app: &TestApp) {
    let posts: usize = std::env::var("ENCLAVE_SEARCH_POSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob]).await;
    // alice is in half of the channels: the other half are bob's alone.
    let mut channels = Vec::new();
    for i in 0..CHANNELS {
        let owner = if i % 2 == 0 { &alice } else { &bob };
        let kind = if i % 2 == 0 { "open" } else { "private" };
        channels.push(app.channel(&team, &format!("c{i}"), kind, owner).await);
    }
    fill(app, posts, &channels, &[&alice, &bob]).await;
    let words = vocabulary();
    let queries = [
        ("common word", words[0].clone()),
        ("mid word", words[60].clone()),
        ("rare word", words[3000].clone()),
        ("two words", format!("{} {}", words[3], words[7])),
        ("phrase", format!("\"{} {}\"", words[0], words[1])),
        ("prefix", "wkal*".to_owned()),
        ("word + from:", format!("{} from:bob", words[5])),
        ("word + in:", format!("{} in:c0", words[5])),
        ("word + after:", format!("{} after:2026-01-01", words[5])),
        ("word - exclusion", format!("{} -{}", words[2], words[0])),
        ("filters only", "from:bob in:c2".to_owned()),
        ("no match", "wzzzzz".to_owned()),
    ];
    println!(
        "{:?}, {posts} posts, searcher in {} of {CHANNELS} channels, median and slowest of {RUNS} runs through the HTTP handler, 20 per page:",
        app.kind,
        CHANNELS / 2
    );
    for (what, q) in queries {
        let uri = format!("/api/v1/search/posts?q={}&per_page=20", enc(&q));
        let mut times = Vec::with_capacity(RUNS);
        let mut hits = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let r = app.get(&uri, &alice).await;
            times.push(t.elapsed());
            assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.body);
            let results = r.body["results"].as_array().unwrap();
            for h in results {
                let ch = h["channel"]["name"].as_str().unwrap();
                let n: usize = ch[1..].parse().unwrap();
                assert_eq!(n % 2, 0, "{q}: found a post of a channel alice is not in");
            }
            hits = results.len();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {what:<18} {q:<28} median {:>7.2} ms  max {:>7.2} ms  ({hits} on the first page)",
            ms(times[RUNS / 2]),
            ms(times[RUNS - 1])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 100,000 posts; run with --ignored --nocapture to measure"]
async fn search_time_sqlite() {
    measure(&TestApp::new(Kind::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 100,000 posts; run with --ignored --nocapture to measure"]
async fn search_time_postgres() {
    measure(&TestApp::new(Kind::Postgres).await).await;
}
