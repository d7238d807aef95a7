//! Names and strings Kubernetes accepts: DNS labels and subdomains, image references, variable,
//! port and key names, hosts and paths.

use crate::domain::DnsLabel;

/// A DNS-1035 label: a DNS-1123 label that starts with a letter (Service names).
pub fn check_dns1035_label(value: &str) -> Result<(), String> {
    DnsLabel::parse(value)?;
    if value.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` must start with a letter, because it names a Kubernetes Service"
        ))
    }
}

/// A container image reference: non-empty, no whitespace or control characters.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        Err("must not be empty".to_owned())
    } else if image.chars().any(char::is_whitespace) {
        Err("an image reference must not contain whitespace".to_owned())
    } else if image.chars().any(char::is_control) {
        Err("an image reference must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}

/// A string usable as an image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_image_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let valid = match chars.next() {
        None => return Err("must not be empty".to_owned()),
        Some(first) => {
            (first.is_ascii_alphanumeric() || first == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
    };
    if !valid || tag.len() > 128 {
        return Err(
            "must be an image tag: up to 128 letters, digits, `_`, `.` and `-`, not starting with \
             `.` or `-`"
                .to_owned(),
        );
    }
    Ok(())
}

/// A C identifier, as the names in a node's `env` must be: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid environment variable name: letters, digits and `_`, not \
             starting with a digit"
        ))
    }
}

/// A variable name Kubernetes accepts on every version (the classic rule,
/// `[-._a-zA-Z][-._a-zA-Z0-9]*`): secret keys injected as variables must be one. Looser than
/// [`check_env_name`], so that keys such as `spring.profiles.active` still work.
pub fn check_env_var_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let valid = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` becomes an environment variable, so it must be letters, digits, `_`, `-` \
             and `.`, not starting with a digit"
        ))
    }
}

/// An IANA service name, as Kubernetes port names must be.
pub fn check_port_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(
            "a port name has 1–15 lowercase letters, digits and single inner `-`, with at least \
             one letter"
                .to_owned(),
        )
    }
}

/// A ConfigMap or Secret key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
pub fn check_data_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let valid = key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && key != "."
        && key != "..";
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is not a valid key: up to 253 letters, digits, `-`, `_` and `.`"
        ))
    }
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 253 {
        return Err("must be at most 253 characters".to_owned());
    }
    for label in name.split('.') {
        if DnsLabel::parse(label).is_err() {
            return Err(format!(
                "`{name}` is not a DNS-1123 subdomain: dot-separated labels of lowercase letters, \
                 digits and `-`"
            ));
        }
    }
    Ok(())
}

/// An ingress host: a DNS-1123 subdomain, optionally behind a `*.` wildcard; not an IP address.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err("must be a DNS name, not an IP address".to_owned());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    check_dns_subdomain(name)
        .map_err(|_| format!("`{host}` is not a DNS name (a `*.` prefix is allowed)"))
}

/// A container mount path: absolute, not the root, no `..` segment, and none of what
/// Kubernetes refuses in a mount path (`:`, control characters).
pub fn check_mount_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must be an absolute path (start with `/`)".to_owned());
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err("must not contain `..`".to_owned());
    }
    if path.contains(':') || path.chars().any(char::is_control) {
        return Err("must not contain `:` or control characters".to_owned());
    }
    // `/` and `//` both mean the root, which would hide the whole image.
    if path.trim_end_matches('/').is_empty() {
        return Err("must not be the root directory".to_owned());
    }
    Ok(())
}

/// A URL path: starts with `/`, no whitespace or control characters.
pub fn check_url_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        Err("must start with `/`".to_owned())
    } else if path.chars().any(char::is_whitespace) {
        Err("must not contain whitespace".to_owned())
    } else if path.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}
