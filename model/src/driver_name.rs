//! The CSI driver name: the spec asks for at most 63 characters in domain-name notation,
//! starting and ending with an alphanumeric character, with '-', '_' and '.' between.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "driver name {0:?} is invalid: use at most 63 characters of a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with a letter or digit (e.g. rwxnfs.csi.io)"
)]
pub struct DriverNameError(String);

impl DriverName {
    pub fn parse(raw: &str) -> Result<Self, DriverNameError> {
        let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let valid = !raw.is_empty()
            && raw.len() <= 63
            && ends_ok(raw.chars().next())
            && ends_ok(raw.chars().last())
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DriverNameError(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DriverName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_driver_name_is_valid() {
        assert!(DriverName::parse(crate::DEFAULT_DRIVER_NAME).is_ok());
    }

    #[test]
    fn driver_names_outside_the_spec_are_rejected() {
        for bad in ["", ".csi.io", "csi.io-", "a b", &"a".repeat(64), "rwx/nfs"] {
            assert!(DriverName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
