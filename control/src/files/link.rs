//! Short-lived download links for stores that cannot presign (the local
//! store): `/api/v1/files/{id}/content?expires=<ms>&signature=<hex>`, an
//! HMAC-SHA256 of the file id and the expiry under a key this process
//! draws at start. A link works without credentials until it expires, like
//! an S3 presigned URL; a restart ends every link (the local store is a
//! single-node store, so no other node needs the key).

use aws_lc_rs::hmac;

pub struct LinkSigner {
    key: hmac::Key,
}

impl Default for LinkSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkSigner {
    pub fn new() -> Self {
        let secret: [u8; 32] = rand::random();
        LinkSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    fn message(file_id: &str, expires_ms: i64) -> String {
        format!("enclave-file-link\n{file_id}\n{expires_ms}")
    }

    pub fn sign(&self, file_id: &str, expires_ms: i64) -> String {
        hex::encode(hmac::sign(&self.key, Self::message(file_id, expires_ms).as_bytes()).as_ref())
    }

    /// Constant-time check of a signature (expiry is the caller's).
    pub fn verify(&self, file_id: &str, expires_ms: i64, signature: &str) -> bool {
        let Ok(sig) = hex::decode(signature) else {
            return false;
        };
        hmac::verify(
            &self.key,
            Self::message(file_id, expires_ms).as_bytes(),
            &sig,
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::LinkSigner;

    #[test]
    fn a_signature_covers_the_file_and_the_expiry() {
        let s = LinkSigner::new();
        let sig = s.sign("f1", 1000);
        assert!(s.verify("f1", 1000, &sig));
        assert!(!s.verify("f2", 1000, &sig));
        assert!(!s.verify("f1", 1001, &sig));
        assert!(!s.verify("f1", 1000, "zz"));
        assert!(!LinkSigner::new().verify("f1", 1000, &sig), "another key");
    }
}
