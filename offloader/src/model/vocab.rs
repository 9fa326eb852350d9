//! The tokenizer's vocabulary, turned back into the raw bytes whisper.cpp
//! expects.
//!
//! CTranslate2 stores GPT-2 byte-level tokens, where every byte is shown as
//! a printable character; whisper.cpp wants the bytes themselves. Only the
//! ordinary tokens are written: whisper.cpp numbers the special ones
//! (`<|endoftext|>` onwards) itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ModelError;

/// The vocabulary file of a model directory: `vocabulary.txt` (one token a
/// line) or `vocabulary.json` (a list of strings), whichever is there.
pub fn find(dir: &Path) -> Result<PathBuf, ModelError> {
    for name in ["vocabulary.txt", "vocabulary.json"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(ModelError::MissingFile(dir.join("vocabulary.txt")))
}

/// The ordinary tokens of the vocabulary at `path`, as bytes, in id order.
pub fn read_base_tokens(path: &Path) -> Result<Vec<Vec<u8>>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let tokens: Vec<String> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| ModelError::BadVocabulary {
            path: path.to_owned(),
            detail: format!("not a JSON list of strings: {e}"),
        })?
    } else {
        text.split('\n').map(str::to_owned).collect()
    };
    let n_base = tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .ok_or_else(|| ModelError::BadVocabulary {
            path: path.to_owned(),
            detail: "no <|endoftext|> token".to_owned(),
        })?;
    let table = unicode_to_byte();
    tokens[..n_base]
        .iter()
        .enumerate()
        .map(|(id, t)| {
            t.chars()
                .map(|c| table.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| ModelError::BadVocabulary {
                    path: path.to_owned(),
                    detail: format!("token {id} ({t:?}) is not byte-level"),
                })
        })
        .collect()
}

/// GPT-2's byte ↔ printable-character table, inverted: printable bytes map
/// to themselves, the other 68 to U+0100 onwards in byte order.
fn unicode_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            u32::from(b)
        } else {
            next += 1;
            next - 1
        };
        // Every value is below U+0200, a valid scalar.
        table.insert(char::from_u32(c).expect("below U+0200"), b);
    }
    table
}
