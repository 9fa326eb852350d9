//! A [`Query`]'s words rendered for each engine: an FTS5 `MATCH`
//! expression (SQLite) or a `to_tsquery` text (PostgreSQL).
//!
//! Every word is quoted (FTS5 string, tsquery quoted lexeme) with its quote
//! characters doubled, so even a word that reached here with operator
//! characters in it would stay a word. The parser already keeps only
//! letters and digits; this is the second wall.

use super::query::{Query, Term};

/// What the text part of a query asks of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMatch {
    /// No words: filters alone select.
    Any,
    /// Rows matching this expression (exclusions folded in).
    Matching(String),
    /// Only exclusions: rows *not* matching this expression.
    NotMatching(String),
}

/// The engine a rendering is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Fts5,
    TsQuery,
}

impl Engine {
    fn term(self, t: &Term) -> String {
        match self {
            Engine::Fts5 => {
                let phrase = t.words.join(" ").replace('"', "\"\"");
                let star = if t.prefix { "*" } else { "" };
                format!("\"{phrase}\"{star}")
            }
            Engine::TsQuery => {
                let last = t.words.len() - 1;
                let lexemes: Vec<String> = t
                    .words
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let w = w.replace('\\', "\\\\").replace('\'', "''");
                        let star = if t.prefix && i == last { ":*" } else { "" };
                        format!("'{w}'{star}")
                    })
                    .collect();
                format!("({})", lexemes.join(" <-> "))
            }
        }
    }

    fn all(self, terms: &[Term]) -> String {
        let sep = match self {
            Engine::Fts5 => " AND ",
            Engine::TsQuery => " & ",
        };
        join(self, terms, sep)
    }

    fn any(self, terms: &[Term]) -> String {
        let sep = match self {
            Engine::Fts5 => " OR ",
            Engine::TsQuery => " | ",
        };
        join(self, terms, sep)
    }

    /// Renders the words of `q`.
    pub fn render(self, q: &Query) -> TextMatch {
        match (q.include.is_empty(), q.exclude.is_empty()) {
            (true, true) => TextMatch::Any,
            (true, false) => TextMatch::NotMatching(self.any(&q.exclude)),
            (false, true) => TextMatch::Matching(self.all(&q.include)),
            (false, false) => {
                let inc = self.all(&q.include);
                let exc = self.any(&q.exclude);
                TextMatch::Matching(match self {
                    Engine::Fts5 => format!("({inc}) NOT ({exc})"),
                    Engine::TsQuery => format!("({inc}) & !({exc})"),
                })
            }
        }
    }
}

fn join(e: Engine, terms: &[Term], sep: &str) -> String {
    terms
        .iter()
        .map(|t| e.term(t))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::super::query::parse;
    use super::*;

    fn both(q: &str) -> (TextMatch, TextMatch) {
        let q = parse(q, 0).unwrap();
        (Engine::Fts5.render(&q), Engine::TsQuery.render(&q))
    }

    #[test]
    fn words_phrases_prefixes_exclusions() {
        let (f, t) = both(r#"plan "go live" rel* -draft -"old plan""#);
        assert_eq!(
            f,
            TextMatch::Matching(
                r#"("plan" AND "go live" AND "rel"*) NOT ("draft" OR "old plan")"#.into()
            )
        );
        assert_eq!(
            t,
            TextMatch::Matching(
                "(('plan') & ('go' <-> 'live') & ('rel':*)) & !(('draft') | ('old' <-> 'plan'))"
                    .into()
            )
        );
        let (f, t) = both("foo.b* -x from:ana");
        assert_eq!(f, TextMatch::Matching(r#"("foo b"*) NOT ("x")"#.into()));
        assert_eq!(
            t,
            TextMatch::Matching("(('foo' <-> 'b':*)) & !(('x'))".into())
        );
    }

    #[test]
    fn exclusions_alone_and_filters_alone() {
        let (f, t) = both("-draft in:general");
        assert_eq!(f, TextMatch::NotMatching(r#""draft""#.into()));
        assert_eq!(t, TextMatch::NotMatching("('draft')".into()));
        assert_eq!(both("from:ana").0, TextMatch::Any);
    }

    #[test]
    fn quotes_inside_words_stay_words() {
        // The parser never produces these; the renderer must not care.
        let q = Query {
            include: vec![Term {
                words: vec!["a\"b".into(), "c'd\\".into()],
                prefix: false,
            }],
            ..Query::default()
        };
        assert_eq!(
            Engine::Fts5.render(&q),
            TextMatch::Matching(r#""a""b c'd\""#.into())
        );
        assert_eq!(
            Engine::TsQuery.render(&q),
            TextMatch::Matching(r#"('a"b' <-> 'c''d\\')"#.into())
        );
    }
}
