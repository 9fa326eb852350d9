//! The S3-compatible store the tests use (SeaweedFS started by
//! `scripts/setup`, or the one `ENCLAVE_TEST_S3_*` names), with its test
//! bucket created. Without a store the S3 tests are skipped with a message,
//! unless `ENCLAVE_REQUIRE_SERVICES=1`, which makes that a failure.

use std::time::Duration;

use control::config::S3Section;
use control::storage::S3Store;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The test store as a config section (5 MiB parts, path-style), or `None`
/// when no store answers and the tests may skip.
pub async fn section() -> Option<S3Section> {
    let endpoint = env_or("ENCLAVE_TEST_S3_ENDPOINT", "http://127.0.0.1:18333");
    let authority = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(&endpoint)
        .trim_end_matches('/')
        .to_owned();
    let reachable = matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(&authority)
        )
        .await,
        Ok(Ok(_))
    );
    if !reachable {
        let msg = format!(
            "no S3-compatible store at {endpoint} (run scripts/setup, or point ENCLAVE_TEST_S3_ENDPOINT at one)"
        );
        if std::env::var("ENCLAVE_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{msg}; ENCLAVE_REQUIRE_SERVICES=1 makes this a failure");
        }
        // Straight to stderr: libtest captures eprintln!, and a skip must show.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("SKIPPED (S3 test): {msg}\n").as_bytes(),
        );
        return None;
    }
    let s = S3Section {
        endpoint,
        region: env_or("ENCLAVE_TEST_S3_REGION", "us-east-1"),
        bucket: env_or("ENCLAVE_TEST_S3_BUCKET", "enclave-test"),
        access_key_id: env_or("ENCLAVE_TEST_S3_ACCESS_KEY", "enclave-test"),
        secret_access_key: env_or("ENCLAVE_TEST_S3_SECRET_KEY", "enclave-test-secret"),
        path_style: true,
        part_size: 5 << 20,
    };
    S3Store::new(&s.to_store_config())
        .unwrap()
        .ensure_bucket()
        .await
        .expect("create the test bucket");
    Some(s)
}
