//! The search box language, parsed into a [`Query`].
//!
//! ```text
//! release plan            both words, anywhere in the text
//! "release plan"          the words next to each other, in this order
//! -draft  -"old plan"     leave out what has the word or phrase
//! rel*                    words that start with "rel"
//! from:ana  from:@ana     written (or uploaded) by ana
//! in:town-square          in a channel, by name or id;  in:@ana  the direct channel with ana
//! before:2026-03-01       before that day;  after: the day after it onwards;  on: that day
//! ext:pdf                 file names ending in .pdf (file searches)
//! ```
//!
//! Several `from:` (or `in:`, `ext:`) widen the search to any of them;
//! dates narrow it. Days are counted in the searcher's time zone (an offset
//! from UTC the caller passes).
//!
//! Words are what the indexes see as words: runs of letters and digits.
//! Everything else separates words, so `foo-bar.txt` is the phrase
//! `foo bar txt` and `NEAR(` or `&|!` are the word `near` or nothing. The
//! parser keeps only letters and digits in a [`Term`], which is why
//! nothing a user types can reach the FTS5 or tsquery syntax (the renderers
//! in [`super::render`] quote terms anyway). A word with a colon whose
//! prefix is not a filter (`10:30`, `http://…`) is text, not an error.

use chrono::NaiveDate;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Most words and phrases (included plus excluded) in one query.
pub const MAX_TERMS: usize = 16;
/// Most words in one phrase.
pub const MAX_PHRASE_WORDS: usize = 16;
/// Longest word, in characters (longer ones are not words anyone types;
/// PostgreSQL would not index them either).
pub const MAX_WORD_CHARS: usize = 100;
/// Most values of one filter kind (`from:`, `in:`, `ext:`).
pub const MAX_FILTER_VALUES: usize = 10;
/// Furthest time-zone offset from UTC, in seconds.
pub const MAX_TZ_OFFSET_SECS: i64 = 14 * 3600;

/// A word or a phrase: lower-case runs of letters and digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// One word, or the words of a phrase in order. Never empty.
    pub words: Vec<String>,
    /// The last word is a prefix (`rel*`).
    pub prefix: bool,
}

/// Where `in:` points, before it is resolved against the searcher's channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRef {
    /// A channel name or id.
    Name(String),
    /// The direct channel with this user (`in:@ana`).
    Direct(String),
}

/// A parsed search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub include: Vec<Term>,
    pub exclude: Vec<Term>,
    /// Usernames, lower case.
    pub from: Vec<String>,
    pub channels: Vec<ChannelRef>,
    /// File extensions, lower case, without the dot.
    pub ext: Vec<String>,
    /// Inclusive lower bound, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound, Unix milliseconds.
    pub until_ms: Option<i64>,
}

impl Query {
    /// True when the query names something to look for besides exclusions.
    pub fn has_criteria(&self) -> bool {
        !self.include.is_empty()
            || !self.from.is_empty()
            || !self.channels.is_empty()
            || !self.ext.is_empty()
            || self.since_ms.is_some()
            || self.until_ms.is_some()
    }
}

/// Why a query was refused; the text is the 400's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is longer than {MAX_QUERY_BYTES} bytes")]
    TooLong,
    #[error("the query has more than {MAX_TERMS} words and phrases")]
    TooManyTerms,
    #[error("a phrase has more than {MAX_PHRASE_WORDS} words")]
    PhraseTooLong,
    #[error("a word is longer than {MAX_WORD_CHARS} characters")]
    WordTooLong,
    #[error("the query has no word, phrase or filter to search for")]
    Empty,
    #[error("{0}: needs a value, e.g. {0}:{1}")]
    MissingValue(&'static str, &'static str),
    #[error("{0}:{1} is not a day; write YYYY-MM-DD")]
    BadDate(&'static str, String),
    #[error("{0}:{1} is not a valid {2}")]
    BadValue(&'static str, String, &'static str),
    #[error("{0}: is given more than {MAX_FILTER_VALUES} times")]
    TooManyValues(&'static str),
    #[error("-{0}: is not supported; filters cannot be excluded")]
    ExcludedFilter(&'static str),
    #[error("the time zone offset must be within ±{MAX_TZ_OFFSET_SECS} seconds")]
    BadOffset,
}

const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy)]
enum Filter {
    From,
    In,
    Before,
    After,
    On,
    Ext,
}

impl Filter {
    fn of(key: &str) -> Option<Filter> {
        Some(match key.to_ascii_lowercase().as_str() {
            "from" => Filter::From,
            "in" => Filter::In,
            "before" => Filter::Before,
            "after" => Filter::After,
            "on" => Filter::On,
            "ext" => Filter::Ext,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Filter::From => "from",
            Filter::In => "in",
            Filter::Before => "before",
            Filter::After => "after",
            Filter::On => "on",
            Filter::Ext => "ext",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Filter::From => "ana",
            Filter::In => "town-square",
            Filter::Before | Filter::After | Filter::On => "2026-03-01",
            Filter::Ext => "pdf",
        }
    }
}

/// Splits text into lower-case words the way the indexes do.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Parses `q`; days are local to `tz_offset_secs` east of UTC.
pub fn parse(q: &str, tz_offset_secs: i64) -> Result<Query, QueryError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(QueryError::TooLong);
    }
    if tz_offset_secs.abs() > MAX_TZ_OFFSET_SECS {
        return Err(QueryError::BadOffset);
    }
    let mut out = Query::default();
    let mut rest = q.trim_start();
    while !rest.is_empty() {
        let negated = rest.len() > 1 && rest.starts_with('-');
        if negated {
            rest = &rest[1..];
        }
        let (token, quoted, tail) = next_token(rest);
        rest = tail.trim_start();
        if !quoted
            && let Some((key, value)) = token.split_once(':')
            && let Some(filter) = Filter::of(key)
        {
            if negated {
                return Err(QueryError::ExcludedFilter(filter.name()));
            }
            apply_filter(&mut out, filter, value, tz_offset_secs)?;
            continue;
        }
        let prefix = !quoted && token.ends_with('*');
        let ws = words(token);
        if ws.is_empty() {
            continue;
        }
        if ws.len() > MAX_PHRASE_WORDS {
            return Err(QueryError::PhraseTooLong);
        }
        if ws.iter().any(|w| w.chars().count() > MAX_WORD_CHARS) {
            return Err(QueryError::WordTooLong);
        }
        let list = if negated {
            &mut out.exclude
        } else {
            &mut out.include
        };
        list.push(Term { words: ws, prefix });
        if out.include.len() + out.exclude.len() > MAX_TERMS {
            return Err(QueryError::TooManyTerms);
        }
    }
    if !out.has_criteria() {
        return Err(QueryError::Empty);
    }
    Ok(out)
}

/// The next token of `s` (which starts with no space): a quoted phrase
/// (to the closing quote, or the end) or a run of non-space characters.
fn next_token(s: &str) -> (&str, bool, &str) {
    if let Some(inner) = s.strip_prefix('"') {
        return match inner.find('"') {
            Some(i) => (&inner[..i], true, &inner[i + 1..]),
            None => (inner, true, ""),
        };
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    (&s[..end], false, &s[end..])
}

fn apply_filter(
    out: &mut Query,
    filter: Filter,
    value: &str,
    tz_offset_secs: i64,
) -> Result<(), QueryError> {
    if value.is_empty() {
        return Err(QueryError::MissingValue(filter.name(), filter.example()));
    }
    let bad = |what| QueryError::BadValue(filter.name(), value.to_owned(), what);
    let list_len = match filter {
        Filter::From => {
            let name = value.strip_prefix('@').unwrap_or(value).to_lowercase();
            if name.is_empty() || !name.chars().all(is_name_char) {
                return Err(bad("username"));
            }
            out.from.push(name);
            out.from.len()
        }
        Filter::In => {
            let r = match value.strip_prefix('@') {
                Some(user) if !user.is_empty() && user.chars().all(is_name_char) => {
                    ChannelRef::Direct(user.to_lowercase())
                }
                Some(_) => return Err(bad("username")),
                None if value.chars().all(is_name_char) => ChannelRef::Name(value.to_lowercase()),
                None => return Err(bad("channel name or id")),
            };
            out.channels.push(r);
            out.channels.len()
        }
        Filter::Ext => {
            let ext = value.strip_prefix('.').unwrap_or(value).to_lowercase();
            if ext.is_empty() || !ext.chars().all(char::is_alphanumeric) {
                return Err(bad("file extension"));
            }
            out.ext.push(ext);
            out.ext.len()
        }
        Filter::Before | Filter::After | Filter::On => {
            let day = parse_day(value)
                .ok_or_else(|| QueryError::BadDate(filter.name(), value.to_owned()))?;
            let start = day_start_ms(day) - tz_offset_secs * 1000;
            let (since, until) = match filter {
                Filter::Before => (None, Some(start)),
                Filter::After => (Some(start + DAY_MS), None),
                _ => (Some(start), Some(start + DAY_MS)),
            };
            // Several date filters all apply: keep the narrowest window.
            if let Some(s) = since {
                out.since_ms = Some(out.since_ms.map_or(s, |x| x.max(s)));
            }
            if let Some(u) = until {
                out.until_ms = Some(out.until_ms.map_or(u, |x| x.min(u)));
            }
            0
        }
    };
    if list_len > MAX_FILTER_VALUES {
        return Err(QueryError::TooManyValues(filter.name()));
    }
    Ok(())
}

/// Usernames and channel names share this alphabet (and ids are a subset).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Exactly `YYYY-MM-DD`, and a day that exists.
fn parse_day(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

fn day_start_ms(day: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a valid day");
    (day - epoch).num_days() * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(words: &[&str], prefix: bool) -> Term {
        Term {
            words: words.iter().map(|w| (*w).to_owned()).collect(),
            prefix,
        }
    }

    fn ok(q: &str) -> Query {
        parse(q, 0).unwrap_or_else(|e| panic!("{q:?}: {e}"))
    }

    const MAR_1: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z

    #[test]
    fn words_phrases_exclusions_prefixes() {
        let q = ok(r#"Release "Go Live plan" -draft -"old plan" rel* x"#);
        assert_eq!(
            q.include,
            [
                t(&["release"], false),
                t(&["go", "live", "plan"], false),
                t(&["rel"], true),
                t(&["x"], false)
            ]
        );
        assert_eq!(
            q.exclude,
            [t(&["draft"], false), t(&["old", "plan"], false)]
        );
    }

    #[test]
    fn punctuation_splits_words_into_phrases() {
        assert_eq!(
            ok("foo-bar.txt").include,
            [t(&["foo", "bar", "txt"], false)]
        );
        assert_eq!(ok("10:30").include, [t(&["10", "30"], false)]);
        assert_eq!(
            ok("http://x.example/a").include,
            [t(&["http", "x", "example", "a"], false)]
        );
        assert_eq!(ok("Café").include, [t(&["café"], false)]);
        assert_eq!(ok("a*b").include, [t(&["a", "b"], false)]);
        // A star inside quotes is punctuation, not a prefix.
        assert_eq!(ok(r#""rel*""#).include, [t(&["rel"], false)]);
    }

    #[test]
    fn hostile_input_is_words_or_nothing() {
        for q in [
            "\"", "*", ":", "&|!", "-", "--", "\"\"", "()", "'", "\\", "^", "NEAR(", "a:",
        ] {
            match parse(q, 0) {
                Ok(p) => {
                    for term in p.include.iter().chain(&p.exclude) {
                        for w in &term.words {
                            assert!(w.chars().all(char::is_alphanumeric), "{q:?} gave {w:?}");
                        }
                    }
                }
                Err(e) => assert_eq!(e, QueryError::Empty, "{q:?}"),
            }
        }
        assert_eq!(ok("NEAR(").include, [t(&["near"], false)]);
        assert_eq!(
            ok("a AND b OR NOT c").include.len(),
            6,
            "operators are plain words"
        );
        assert_eq!(
            ok("\"unterminated phrase").include,
            [t(&["unterminated", "phrase"], false)]
        );
        assert_eq!(ok("x'); DROP TABLE posts;--").include.len(), 4);
    }

    #[test]
    fn filters() {
        let q =
            ok("from:Ana from:@bob in:town-square in:@Cy in:abcdefghijklmnopqrstuvwxyz ext:.PDF");
        assert_eq!(q.from, ["ana", "bob"]);
        assert_eq!(
            q.channels,
            [
                ChannelRef::Name("town-square".into()),
                ChannelRef::Direct("cy".into()),
                ChannelRef::Name("abcdefghijklmnopqrstuvwxyz".into())
            ]
        );
        assert_eq!(q.ext, ["pdf"]);
        assert!(q.include.is_empty());
        // An unknown key is text.
        assert_eq!(ok("to:ana").include, [t(&["to", "ana"], false)]);
        // A quoted filter is text too.
        assert_eq!(ok(r#""from:ana""#).include, [t(&["from", "ana"], false)]);
    }

    #[test]
    fn dates_narrow_the_window() {
        let q = ok("before:2026-03-01");
        assert_eq!((q.since_ms, q.until_ms), (None, Some(MAR_1)));
        let q = ok("after:2026-03-01");
        assert_eq!((q.since_ms, q.until_ms), (Some(MAR_1 + DAY_MS), None));
        let q = ok("on:2026-03-01");
        assert_eq!(
            (q.since_ms, q.until_ms),
            (Some(MAR_1), Some(MAR_1 + DAY_MS))
        );
        let q = ok("after:2026-02-01 before:2026-04-01 before:2026-03-01");
        assert_eq!(q.until_ms, Some(MAR_1));
        assert_eq!(q.since_ms, Some(MAR_1 - 27 * DAY_MS));
        let q = ok("after:2026-02-01 on:2026-02-20 before:2026-04-01");
        assert_eq!(q.since_ms, Some(MAR_1 - 9 * DAY_MS));
        assert_eq!(q.until_ms, Some(MAR_1 - 8 * DAY_MS));
        // Two hours east of UTC, the day starts two hours earlier.
        let q = parse("on:2026-03-01", 7200).unwrap();
        assert_eq!(q.since_ms, Some(MAR_1 - 7_200_000));
    }

    #[test]
    fn precise_errors() {
        let err = |q: &str| parse(q, 0).unwrap_err().to_string();
        assert_eq!(
            err("before:2026-02-30"),
            "before:2026-02-30 is not a day; write YYYY-MM-DD"
        );
        assert_eq!(
            err("on:2026-3-1"),
            "on:2026-3-1 is not a day; write YYYY-MM-DD"
        );
        assert_eq!(
            err("after:yesterday"),
            "after:yesterday is not a day; write YYYY-MM-DD"
        );
        assert_eq!(err("from:"), "from: needs a value, e.g. from:ana");
        assert_eq!(err("from:a$b"), "from:a$b is not a valid username");
        assert_eq!(err("in:a/b"), "in:a/b is not a valid channel name or id");
        assert_eq!(err("in:@"), "in:@ is not a valid username");
        assert_eq!(err("ext:p.df"), "ext:p.df is not a valid file extension");
        assert_eq!(
            err("x -from:ana"),
            "-from: is not supported; filters cannot be excluded"
        );
        assert_eq!(
            err("-draft"),
            "the query has no word, phrase or filter to search for"
        );
        assert_eq!(
            err("   "),
            "the query has no word, phrase or filter to search for"
        );
        assert_eq!(err(&"a ".repeat(17)), QueryError::TooManyTerms.to_string());
        assert_eq!(err(&"x".repeat(101)), QueryError::WordTooLong.to_string());
        assert_eq!(err(&"x ".repeat(600)), QueryError::TooLong.to_string());
        assert_eq!(
            err(&format!("\"{}\"", "w ".repeat(17))),
            QueryError::PhraseTooLong.to_string()
        );
        assert_eq!(
            err(&"from:a ".repeat(11)),
            QueryError::TooManyValues("from").to_string()
        );
        assert_eq!(parse("x", 15 * 3600), Err(QueryError::BadOffset));
    }
}
