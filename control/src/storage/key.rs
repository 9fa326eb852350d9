use std::fmt;

use super::StorageError;

/// The longest key S3 accepts (in bytes).
const MAX_KEY_LEN: usize = 1024;

/// A validated object key: `/`-separated segments, each non-empty, not
/// starting with `.` (so no `.`, `..` or hidden names), made of ASCII
/// letters, digits and `-_.=+@,`. Nothing that a file system or an S3 URL
/// could read as anything but a plain name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<Self, StorageError> {
        let key = key.into();
        if valid(&key) {
            Ok(ObjectKey(key))
        } else {
            Err(StorageError::InvalidKey(key))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's segments, each safe to use as one file name.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn valid(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg.len() <= 255
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.=+@,".contains(&b))
        })
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectKey::new(s)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectKey;

    #[test]
    fn accepts_plain_keys() {
        for k in ["a", "files/2026/11/abc.png", "x-y_z.tar.gz", "u@host,=+"] {
            assert!(ObjectKey::new(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn refuses_traversal_and_odd_names() {
        for k in [
            "",
            "/",
            "/etc/passwd",
            "a//b",
            "a/",
            "..",
            "../x",
            "a/../b",
            "a/./b",
            ".hidden",
            "a/.tmp",
            "a\\b",
            "a\0b",
            "a b",
            "é",
            "a\nb",
            "C:x",
        ] {
            assert!(ObjectKey::new(k).is_err(), "{k:?}");
        }
        assert!(ObjectKey::new("a".repeat(1025)).is_err());
    }
}
