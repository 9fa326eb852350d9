//! Identifiers that cross the wire. Control mints them; rtcd only checks
//! their shape so that a hostile peer cannot smuggle paths or huge strings
//! into logs, metrics or URLs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest identifier accepted from the wire.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    Empty,
    TooLong(usize),
    BadChar(char),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => write!(f, "identifier is empty"),
            IdError::TooLong(n) => {
                write!(
                    f,
                    "identifier is {n} bytes long, at most {MAX_ID_LEN} allowed"
                )
            }
            IdError::BadChar(c) => write!(
                f,
                "identifier contains {c:?}; only ASCII letters, digits, '-' and '_' are allowed"
            ),
        }
    }
}

impl std::error::Error for IdError {}

fn check(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(IdError::BadChar(c)),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks the shape: 1..=64 bytes of `[A-Za-z0-9_-]`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A call: lives on exactly one rtcd node at a time.
    CallId
);
id_type!(
    /// One participant's media session in a call (one peer connection).
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        assert!(CallId::new("c-01_AZ").is_ok());
        assert_eq!(SessionId::new("s1").unwrap().as_str(), "s1");
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(CallId::new(""), Err(IdError::Empty));
        assert_eq!(CallId::new("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(CallId::new("x".repeat(65)), Err(IdError::TooLong(65)));
        let err = serde_json::from_str::<SessionId>("\"../etc\"").unwrap_err();
        assert!(err.to_string().contains("only ASCII letters"), "{err}");
    }
}
id_type!(
    /// An offloader job (a recording, a transcription, live captions).
    JobId
);
