//! Names that are valid by construction (parse, don't validate).

use std::fmt;

/// The pattern of a [`DnsLabel`], stated in the OpenAPI document.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// The pattern of a [`DisplayName`]: no control characters and not only whitespace.
pub const DISPLAY_NAME_PATTERN: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// A Kubernetes DNS-1123 label: 1–63 chars of `[a-z0-9-]`, starting and ending alphanumeric.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsLabel(String);

impl DnsLabel {
    /// Longest label Kubernetes accepts.
    pub const MAX_LEN: usize = 63;

    /// Parses `value`, explaining what is wrong when it is not a DNS-1123 label.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if value.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(
                "must be a DNS-1123 label: lowercase letters, digits and '-' only".to_owned(),
            );
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err("must start and end with a letter or digit".to_owned());
        }
        Ok(Self(value.to_owned()))
    }

    /// The label as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The label as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for DnsLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A human display name: 1–100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Longest display name accepted.
    pub const MAX_LEN: usize = 100;

    /// Parses `value` (trimmed).
    pub fn parse(value: &str) -> Result<Self, String> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "acme", "web-1", "0abc", &"a".repeat(63)] {
            assert!(DnsLabel::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Acme", "a_b", "a.b", "ä", &"a".repeat(64)] {
            assert!(DnsLabel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(
            DisplayName::parse("  Acme Inc ").map(DisplayName::into_string),
            Ok("Acme Inc".to_owned())
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\nb").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
    }
}
