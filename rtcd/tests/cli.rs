//! The binary's command line as an operator uses it: configuration from a
//! file or the environment, checked before anything binds, and WHIP/WHEP
//! tokens minted offline.

mod common;

use common::{API_KEY, TOKEN_SECRET, binary_env, call_id, rtcd_command};
use rtcd::auth::{Role, verify_token};

#[test]
fn token_mints_a_token_rtcd_verifies_for_its_call_and_role_only() {
    let out = rtcd_command(&binary_env(1, 5))
        .args([
            "token",
            "--call",
            "town-hall",
            "--role",
            "play",
            "--ttl",
            "60",
        ])
        .output()
        .expect("rtcd token");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("UTF-8");
    let token = token.trim();
    let call = call_id("town-hall");
    assert_eq!(verify_token(TOKEN_SECRET, token, &call, Role::Play), Ok(()));
    assert!(verify_token(TOKEN_SECRET, token, &call, Role::Publish).is_err());
    assert!(verify_token(TOKEN_SECRET, token, &call_id("other"), Role::Play).is_err());
}

#[test]
fn a_bad_configuration_lists_every_problem_and_exits_64() {
    let env: Vec<(String, String)> = [
        ("RTCD_API__KEYS", r#"["short"]"#),
        ("RTCD_API__TOKEN_SECRET", "also-short"),
        ("RTCD_RTC__NAT", r#"["1.2.3.4"]"#),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out = rtcd_command(&env)
        .arg("check-config")
        .output()
        .expect("rtcd check-config");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["api.keys[0]", "api.token_secret", "rtc.nat"] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
}

fn config_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("rtcd-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, format!("[api]\nkeys = [\"{API_KEY}\"]\n")).expect("write config");
    path
}

#[test]
fn check_config_accepts_a_file_given_with_c() {
    let path = config_file("flag");
    let out = rtcd_command(&[])
        .args(["check-config", "-c"])
        .arg(&path)
        .output()
        .expect("rtcd check-config");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{out:?}");
}

/// `--help` documents RTCD_CONFIG as the environment form of `--config`.
#[test]
fn the_documented_rtcd_config_variable_names_the_file() {
    let path = config_file("env");
    let env = vec![("RTCD_CONFIG".to_string(), path.display().to_string())];
    let out = rtcd_command(&env)
        .arg("check-config")
        .output()
        .expect("rtcd check-config");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{out:?}");
}
