//! Password hashing (argon2id, the crate's defaults: 19 MiB, 2 passes) and
//! the password policy. Hashing is deliberately slow: call [`hash`] and
//! [`verify`] through `spawn_blocking` from async code.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

use crate::config::AuthConfig;

/// Longest password accepted (bytes): long enough for any passphrase,
/// short enough that hashing it is no denial of service.
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn hash(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// True if `password` matches the PHC string `hash`.
pub fn verify(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Burns the same time as a real check, for logins by unknown names, so
/// response times do not tell which usernames exist.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let h = DUMMY
        .get_or_init(|| hash("not a real password, only a timing stand-in").unwrap_or_default());
    let _ = verify(password, h);
}

/// Checks a new password against the policy; every problem is listed.
pub fn check_policy(cfg: &AuthConfig, username: &str, password: &str) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let chars = password.chars().count();
    if chars < cfg.password_min_length {
        problems.push(format!(
            "the password must be at least {} characters long",
            cfg.password_min_length
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        problems.push(format!(
            "the password must be at most {MAX_PASSWORD_BYTES} bytes long"
        ));
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if classes < cfg.password_min_classes {
        problems.push(format!(
            "the password must mix at least {} of: lower case, upper case, digits, other characters",
            cfg.password_min_classes
        ));
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        problems.push("the password must not contain the username".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A random password that meets any policy this server accepts (first-run
/// admin, CLI resets without a given password).
pub fn generate() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let body: String = (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{body}-a7Q")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_password() {
        let h = hash("Correct-Horse-9").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("Correct-Horse-9", &h));
        assert!(!verify("correct-horse-9", &h));
        assert!(!verify("x", "not a phc string"));
    }

    #[test]
    fn the_policy_lists_every_problem() {
        let cfg = AuthConfig::default();
        let p = check_policy(&cfg, "alice", "alice").unwrap_err();
        assert_eq!(p.len(), 3, "{p:#?}");
        check_policy(&cfg, "alice", "Tr0ub4dor&3xyz").unwrap();
        check_policy(&cfg, "alice", &generate()).unwrap();
    }
}
