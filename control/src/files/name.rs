//! File names as users give them, made safe to store and to send back in a
//! `Content-Disposition` header. The name is only ever metadata: objects
//! are stored under the file's random id, so no name reaches a path.

/// Longest name, in bytes (what common file systems allow).
pub const MAX_NAME_BYTES: usize = 255;

/// Characters that reorder or hide text: `invoice`, U+202E, `fdp.exe`
/// shows as `invoiceexe.pdf`. Refused so that the name a member sees is the name
/// the file has.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// Trims surrounding white space and trailing dots (which Windows drops
/// when saving), then refuses what is not a plain file name. The error says
/// exactly what is wrong.
pub fn normalise(raw: &str) -> Result<String, String> {
    let name = raw.trim().trim_end_matches(['.', ' ']);
    if name.is_empty() {
        return Err(if raw.trim().is_empty() {
            "the file name is empty".into()
        } else {
            format!("{raw:?} is not a file name")
        });
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(format!(
            "the file name must not contain {c:?}: send the name alone, without a path"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the file name contains the control character U+{:04X}",
            u32::from(c)
        ));
    }
    if let Some(c) = name.chars().find(|&c| is_invisible_format(c)) {
        return Err(format!(
            "the file name contains the invisible formatting character U+{:04X}",
            u32::from(c)
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the file name is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        ));
    }
    Ok(name.to_owned())
}

/// The name as an ASCII-only `filename="…"` value (old clients), keeping
/// what it can: other characters, quotes and backslashes become `_`.
pub fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266, RFC 8187).
pub fn content_disposition(kind: &str, name: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    // RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"
    const ATTR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    format!(
        "{kind}; filename=\"{}\"; filename*=UTF-8''{}",
        ascii_fallback(name),
        utf8_percent_encode(name, ATTR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_trimmed() {
        assert_eq!(normalise("  report.pdf ").unwrap(), "report.pdf");
        assert_eq!(normalise("notes...").unwrap(), "notes");
        assert_eq!(normalise(".bashrc").unwrap(), ".bashrc");
        assert_eq!(normalise("Ünïcödé 报告.txt").unwrap(), "Ünïcödé 报告.txt");
    }

    #[test]
    fn paths_control_and_hidden_characters_are_refused() {
        for (raw, want) in [
            ("../../etc/passwd", "'/'"),
            ("..\\boot.ini", "'\\\\'"),
            ("/abs", "'/'"),
            ("..", "not a file name"),
            ("", "empty"),
            ("   ", "empty"),
            ("a\nb", "U+000A"),
            ("a\0b", "U+0000"),
            ("a\u{7f}", "U+007F"),
            ("invoice\u{202E}fdp.exe", "U+202E"),
        ] {
            let e = normalise(raw).unwrap_err();
            assert!(e.contains(want), "{raw:?}: {e}");
        }
        assert!(
            normalise(&"a".repeat(256))
                .unwrap_err()
                .contains("256 bytes")
        );
        assert!(
            normalise(&"é".repeat(128)).is_err(),
            "bytes, not characters"
        );
    }

    #[test]
    fn content_disposition_is_safe_and_keeps_the_name() {
        assert_eq!(
            content_disposition("attachment", "a \"b\"\\c ü.pdf"),
            "attachment; filename=\"a _b__c _.pdf\"; filename*=UTF-8''a%20%22b%22%5Cc%20%C3%BC.pdf"
        );
    }
}
