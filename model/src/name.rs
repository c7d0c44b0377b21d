//! Names of exports, snapshots and backends.
//!
//! A name becomes a directory under the export root, so it is held to a strict alphabet rather
//! than sanitised: a name that passes [`Name::parse`] can never name a parent directory, a
//! hidden file, or anything outside the root.

use std::fmt;

/// Longest accepted name. CSI's own limit for object names is 128.
pub(crate) const MAX_NAME_LEN: usize = 128;

/// A validated export, snapshot or backend name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {len} characters long; at most {MAX_NAME_LEN} are allowed")]
    TooLong { len: usize },
    #[error("name {name:?} contains {found:?}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed")]
    BadCharacter { name: String, found: char },
    #[error("name {name:?} starts with {first:?}; it must start with a letter or a digit")]
    BadStart { name: String, first: char },
}

impl Name {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        // Count characters, not bytes, so the message matches what the user typed.
        let len = raw.chars().count();
        if len > MAX_NAME_LEN {
            return Err(NameError::TooLong { len });
        }
        if let Some(found) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NameError::BadCharacter {
                name: shorten(raw),
                found,
            });
        }
        let first = raw.chars().next().unwrap_or('.');
        if !first.is_ascii_alphanumeric() {
            return Err(NameError::BadStart {
                name: raw.to_owned(),
                first,
            });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Keeps error messages readable when someone sends kilobytes of garbage.
fn shorten(raw: &str) -> String {
    const KEEP: usize = 64;
    if raw.chars().count() <= KEEP {
        raw.to_owned()
    } else {
        let head: String = raw.chars().take(KEEP).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_style_names_are_accepted() {
        for ok in ["pvc-0f1e2d3c", "a", "Snap_1.v2", &"a".repeat(MAX_NAME_LEN)] {
            assert_eq!(Name::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn names_that_could_escape_the_export_root_are_rejected() {
        for bad in [
            "..", ".", "../x", "a/b", "/abs", ".hidden", "-flag", "a\0b", "a b", "é",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn overlong_names_are_rejected_with_their_length() {
        let long = "a".repeat(4096);
        assert_eq!(Name::parse(&long), Err(NameError::TooLong { len: 4096 }));
    }

    #[test]
    fn errors_name_the_offending_character() {
        let err = Name::parse("pvc/1").unwrap_err().to_string();
        assert!(err.contains("'/'"), "{err}");
    }
}
