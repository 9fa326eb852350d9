//! Random secrets and their stored form.

use aws_lc_rs::digest;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 256 random bits, hex-encoded, after `prefix`.
pub fn random_secret(prefix: &str) -> String {
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", hex(&bytes))
}

/// What the database keeps of a secret: its SHA-256, hex-encoded. The
/// secrets are 256 random bits, so a fast hash is enough (no dictionary to
/// attack).
pub fn hash_secret(secret: &str) -> String {
    hex(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref())
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hash_stably() {
        let a = random_secret("enp_");
        let b = random_secret("enp_");
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_eq!(hash_secret("abc").len(), 64);
        assert!(secrets_equal(&a, &a.clone()));
        assert!(!secrets_equal(&a, &b));
    }
}
