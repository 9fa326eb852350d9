//! What a file is, read from its first bytes (magic numbers), and whether
//! the configured allow and block lists accept it. The client's claimed
//! type is not trusted: a `.png` that starts like an ELF binary is an
//! executable.

/// How many leading bytes are read before deciding.
pub const SNIFF_BYTES: usize = 8192;

pub const OCTET_STREAM: &str = "application/octet-stream";

/// The type of a file that starts with `head` (at most [`SNIFF_BYTES`];
/// the whole file when shorter). Unknown binary is
/// `application/octet-stream`; unknown text that is valid UTF-8 is
/// `text/plain`.
pub fn sniff(head: &[u8]) -> String {
    if let Some(t) = infer::get(head) {
        return t.mime_type().to_owned();
    }
    if looks_like_text(head) {
        "text/plain".into()
    } else {
        OCTET_STREAM.into()
    }
}

fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sniffed bytes.
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// Image types control decodes for thumbnails.
pub fn has_thumbnail_codec(mime: &str) -> bool {
    matches!(
        mime,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// `type/subtype` or `type/*`, lower case.
pub fn valid_pattern(p: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b))
    };
    match p.split_once('/') {
        Some((t, "*")) => token(t),
        Some((t, s)) => token(t) && token(s),
        None => false,
    }
}

fn matches(pattern: &str, mime: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(top) => mime.split('/').next() == Some(top),
        None => pattern == mime,
    }
}

/// `Err` with the reason when the lists refuse `mime`.
pub fn check(mime: &str, allowed: &[String], blocked: &[String]) -> Result<(), String> {
    if blocked.iter().any(|p| matches(p, mime)) {
        return Err(format!("files of type {mime} are not accepted"));
    }
    if !allowed.is_empty() && !allowed.iter().any(|p| matches(p, mime)) {
        return Err(format!(
            "files of type {mime} are not accepted (accepted: {})",
            allowed.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
        elf.resize(64, 0);
        assert_eq!(sniff(&elf), "application/x-executable");
        assert_eq!(sniff("héllo, world\n".as_bytes()), "text/plain");
        assert_eq!(sniff(&"é".as_bytes()[..1]), "text/plain", "cut character");
        assert_eq!(sniff(b"\x01\x02\x00\xff"), OCTET_STREAM);
    }

    #[test]
    fn allow_and_block_lists() {
        let allow = vec!["image/*".to_owned(), "application/pdf".to_owned()];
        let block = vec!["image/gif".to_owned()];
        assert!(check("image/png", &allow, &block).is_ok());
        assert!(check("application/pdf", &allow, &block).is_ok());
        assert!(check("image/gif", &allow, &block).is_err());
        assert!(
            check("text/plain", &allow, &block)
                .unwrap_err()
                .contains("accepted: image/*")
        );
        assert!(check("text/plain", &[], &block).is_ok());
        assert!(valid_pattern("image/*") && valid_pattern("application/vnd.ms-excel"));
        assert!(!valid_pattern("image") && !valid_pattern("*/*") && !valid_pattern("Image/PNG"));
    }
}
