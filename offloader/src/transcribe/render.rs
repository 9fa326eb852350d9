//! Transcript renderings: WebVTT with voice tags, and plain text.

use std::fmt::Write;

use super::Cue;

fn vtt_time(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Escapes cue text; also removes what would end the cue early (a blank
/// line, or `-->`, which WebVTT forbids in cue text).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A speaker's name inside `<v …>`: no `>` may end the tag early, and
/// escapes apply.
fn escape_voice(name: &str) -> String {
    escape(name.trim())
}

/// The cues as a WebVTT file: one cue per line of the transcript, the
/// speaker as a voice span (`<v Alice>text`).
pub fn webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for (i, c) in cues.iter().enumerate() {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "\n{}\n{} --> {}\n<v {}>{}\n",
            i + 1,
            vtt_time(c.start_ms),
            vtt_time(c.end_ms.max(c.start_ms)),
            escape_voice(&c.speaker),
            escape(&c.text)
        );
    }
    out
}

/// The cues as text, one `[hh:mm:ss] Speaker: text` line each.
pub fn plain_text(cues: &[Cue]) -> String {
    let mut out = String::new();
    for c in cues {
        let s = c.start_ms / 1000;
        let text = c.text.replace(['\n', '\r'], " ");
        let _ = writeln!(
            out,
            "[{:02}:{:02}:{:02}] {}: {}",
            s / 3600,
            s / 60 % 60,
            s % 60,
            c.speaker.trim(),
            text
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(start_ms: u64, end_ms: u64, speaker: &str, text: &str) -> Cue {
        Cue {
            start_ms,
            end_ms,
            speaker: speaker.into(),
            text: text.into(),
        }
    }

    #[test]
    fn webvtt_has_voice_tags_and_escapes() {
        let v = webvtt(&[
            cue(1_500, 3_250, "Alice", "Fish & chips <3 -> yes"),
            cue(3_723_004, 3_724_000, "Bob <admin>", "ok"),
        ]);
        assert_eq!(
            v,
            "WEBVTT\n\n1\n00:00:01.500 --> 00:00:03.250\n<v Alice>Fish &amp; chips &lt;3 -&gt; yes\n\
             \n2\n01:02:03.004 --> 01:02:04.000\n<v Bob &lt;admin&gt;>ok\n"
        );
        assert_eq!(webvtt(&[]), "WEBVTT\n");
    }

    #[test]
    fn plain_text_lines() {
        let t = plain_text(&[cue(62_900, 64_000, "Alice", "hello\nthere")]);
        assert_eq!(t, "[00:01:02] Alice: hello there\n");
    }
}
