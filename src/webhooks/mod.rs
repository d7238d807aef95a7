//! Webhooks: event patterns, secrets, the `Gantry-Signature` scheme, and outbound-address safety.

pub mod outbound;
pub mod sender;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Prefix of generated signing secrets (so they are recognisable in a vault or a leak scan).
pub const SECRET_PREFIX: &str = "whsec_";
/// Largest number of event patterns one webhook may subscribe to.
pub const MAX_PATTERNS: usize = 50;

/// A new random signing secret: 32 bytes, base64url, prefixed.
pub fn generate_secret() -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The `Gantry-Signature` header value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("t={timestamp},v1={}", hex::encode(context.sign().as_ref()))
}

/// Checks an event pattern: `*`, an exact type such as `codegen.succeeded`, or `workspace.*`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let (aggregate, verb) = pattern
        .split_once('.')
        .ok_or_else(|| "must be `*`, `aggregate.*` or `aggregate.verb`".to_owned())?;
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if word(aggregate) && (verb == "*" || word(verb)) {
        Ok(())
    } else {
        Err("must be `*`, `aggregate.*` or `aggregate.verb` (lowercase letters and `_`)".to_owned())
    }
}

/// True when `event_type` matches any of `patterns`.
pub fn matches(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|pattern| {
        pattern == "*"
            || pattern == event_type
            || pattern
                .strip_suffix('*')
                .is_some_and(|prefix| event_type.starts_with(prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Reference value computed independently:
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test",b"1700000000.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature_header("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn secrets_are_random_and_prefixed() {
        let a = generate_secret().expect("random");
        let b = generate_secret().expect("random");
        assert!(a.starts_with(SECRET_PREFIX));
        assert_ne!(a, b);
        assert_eq!(a.len(), SECRET_PREFIX.len() + 43);
    }

    #[test]
    fn patterns() {
        for ok in [
            "*",
            "workspace.*",
            "codegen.succeeded",
            "project.graph_updated",
        ] {
            assert!(check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "workspace",
            "Workspace.*",
            "a.b.c",
            "*.created",
            "a.",
            ".b",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
        let patterns = vec!["workspace.*".to_owned(), "codegen.succeeded".to_owned()];
        assert!(matches(&patterns, "workspace.ready"));
        assert!(matches(&patterns, "codegen.succeeded"));
        assert!(!matches(&patterns, "codegen.failed"));
        assert!(matches(&["*".to_owned()], "org.created"));
    }
}
