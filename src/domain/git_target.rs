//! Git targets: which repository URLs, branch names and folders a codegen delivery may write
//! to, and how git reaches them. Pure rules, shared by the API's submission checks and the
//! codegen runner's delivery.

use crate::error::FieldError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const MAX_URL_LEN: usize = 2048;
const MAX_BRANCH_LEN: usize = 200;
const MAX_PATH_LEN: usize = 1024;

/// Where a job's files go: a branch of a repository, under a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitTarget {
    /// Repository URL: `https://host/org/repo.git`, `ssh://git@host/org/repo.git` or
    /// `git@host:org/repo.git`. Never with a password: credentials come from an org secret.
    pub url: String,
    /// Branch to commit to; created (from the default branch, or empty) when it does not exist.
    pub branch: String,
    /// Folder inside the repository whose content is replaced by the files; `.` or empty for
    /// the repository root. Files outside it are left alone.
    #[serde(default)]
    pub path: String,
}

/// How git reaches a repository, which decides how credentials are passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `https://` or `http://`.
    Http,
    /// `ssh://` or scp-like `host:path`.
    Ssh,
    /// `file://` (tests and local mirrors).
    File,
}

/// A URL that passed validation: its scheme (`https`, `http`, `ssh`, `file`) and transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUrl {
    /// `https`, `http`, `ssh` or `file` (scp-like URLs are `ssh`).
    pub scheme: String,
    /// How git reaches it.
    pub transport: Transport,
}

/// Checks `url` is a repository URL git will treat as such, without a password.
pub fn check_url(url: &str) -> Result<CheckedUrl, String> {
    if url.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if url.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err("must not contain whitespace, control characters or backslashes".to_owned());
    }
    // A leading '-' would be read as an option by git or ssh.
    if url.starts_with('-') {
        return Err("must not start with '-'".to_owned());
    }
    if url.contains("://") {
        check_standard_url(url)
    } else {
        check_scp_like(url)
    }
}

fn check_standard_url(url: &str) -> Result<CheckedUrl, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
    let scheme = parsed.scheme().to_ascii_lowercase();
    let transport = match scheme.as_str() {
        "https" | "http" => Transport::Http,
        "ssh" => Transport::Ssh,
        "file" => Transport::File,
        other => {
            return Err(format!(
                "scheme {other:?} is not supported (https, http, ssh or file)"
            ))
        }
    };
    if parsed.password().is_some() {
        return Err(
            "must not contain a password: put credentials in an org secret instead".to_owned(),
        );
    }
    match transport {
        Transport::File => {
            if parsed.path().trim_matches('/').is_empty() {
                return Err("must name a repository path".to_owned());
            }
        }
        Transport::Http | Transport::Ssh => {
            let host = parsed.host_str().unwrap_or_default();
            if host.is_empty() {
                return Err("must name a host".to_owned());
            }
            if host.starts_with('-') {
                return Err("the host must not start with '-'".to_owned());
            }
            if parsed.path().trim_matches('/').is_empty() {
                return Err("must name a repository path".to_owned());
            }
        }
    }
    Ok(CheckedUrl { scheme, transport })
}

/// `[user@]host:path`, which git reads as ssh.
fn check_scp_like(url: &str) -> Result<CheckedUrl, String> {
    let not_a_url =
        || "must be a URL (https://…, ssh://…) or scp-like git@host:path (ssh)".to_owned();
    let Some((user_host, path)) = url.split_once(':') else {
        return Err(not_a_url());
    };
    // A slash before the first colon makes git read a local path.
    if user_host.contains('/') || path.is_empty() {
        return Err(not_a_url());
    }
    // `transport::address` runs a remote helper (`ext::` runs commands).
    if path.starts_with(':') {
        return Err("remote-helper URLs (`transport::address`) are not supported".to_owned());
    }
    // `user:password@host:path` splits at the password's colon: the "path" then holds an '@'
    // before any '/'.
    let path_head = path.split('/').next().unwrap_or_default();
    if path_head.contains('@') {
        return Err(
            "must not contain a password: put credentials in an org secret instead".to_owned(),
        );
    }
    let host = match user_host.rsplit_once('@') {
        Some((user, host)) => {
            if user.is_empty() {
                return Err(not_a_url());
            }
            host
        }
        None => user_host,
    };
    if host.is_empty() || host.starts_with('-') || host.starts_with('[') {
        return Err(not_a_url());
    }
    Ok(CheckedUrl {
        scheme: "ssh".to_owned(),
        transport: Transport::Ssh,
    })
}

/// Most entries in a secret's `allowed_hosts`.
pub const MAX_ALLOWED_HOSTS: usize = 50;

/// The port git uses for `scheme` when the URL names none.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        "ssh" => Some(22),
        _ => None,
    }
}

/// The host (lower case, IPv6 without brackets) and port git connects to for `url`; `None`
/// for `file://` and anything that is not a remote URL.
pub fn remote_host_port(url: &str) -> Option<(String, u16)> {
    let checked = check_url(url).ok()?;
    if checked.transport == Transport::File {
        return None;
    }
    if url.contains("://") {
        let parsed = reqwest::Url::parse(url).ok()?;
        let host = parsed
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = parsed.port().or_else(|| default_port(&checked.scheme))?;
        Some((host.to_ascii_lowercase(), port))
    } else {
        let (user_host, _) = url.split_once(':')?;
        let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
        Some((host.to_ascii_lowercase(), 22))
    }
}

/// Parses one `allowed_hosts` entry, `host` or `host:port` (`[v6]` or `[v6]:port` for IPv6),
/// into its normal form: lower case, IPv6 in brackets.
pub fn parse_allowed_host(entry: &str) -> Result<String, String> {
    let entry = entry.trim().to_ascii_lowercase();
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{entry:?}: an IPv6 address needs its closing ']'"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{entry:?}: {v6:?} is not an IPv6 address"));
        }
        match after {
            "" => (format!("[{v6}]"), None),
            _ => match after.strip_prefix(':') {
                Some(port) => (format!("[{v6}]"), Some(port)),
                None => return Err(format!("{entry:?} must be host or host:port")),
            },
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (entry.clone(), None),
        }
    };
    if !host.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(format!(
                "{entry:?} must be a host name or IP address, optionally with :port (no scheme,                  path or wildcard)"
            ));
        }
    }
    match port {
        None => Ok(host),
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 && port == p.to_string() => Ok(format!("{host}:{p}")),
            _ => Err(format!("{entry:?}: {port:?} is not a port (1-65535)")),
        },
    }
}

/// Whether a secret bound to `allowed` may be sent to `url`: an entry `host` allows the host on
/// the URL scheme's default port (443, 80, 22), `host:port` that port only. `file://` URLs
/// never receive credentials, so nothing is needed there.
pub fn host_allowed(allowed: &[String], url: &str) -> bool {
    let Ok(checked) = check_url(url) else {
        return false;
    };
    if checked.transport == Transport::File {
        return true;
    }
    let Some((host, port)) = remote_host_port(url) else {
        return false;
    };
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let default = default_port(&checked.scheme);
    allowed.iter().any(|entry| {
        let Ok(entry) = parse_allowed_host(entry) else {
            return false;
        };
        if entry == bracketed {
            return default == Some(port);
        }
        entry == format!("{bracketed}:{port}")
    })
}

/// Checks `branch` is a branch name git accepts (`git check-ref-format --branch`).
pub fn check_branch(branch: &str) -> Result<(), String> {
    if branch.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if branch.len() > MAX_BRANCH_LEN {
        return Err(format!("must be at most {MAX_BRANCH_LEN} characters"));
    }
    if let Some(c) = branch.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return Err(format!("must not contain {c:?}"));
    }
    if branch.contains("..") || branch.contains("@{") || branch.contains("//") {
        return Err("must not contain '..', '@{' or '//'".to_owned());
    }
    if branch.starts_with('-') || branch.starts_with('/') {
        return Err("must not start with '-' or '/'".to_owned());
    }
    if branch.ends_with('/') || branch.ends_with('.') || branch.ends_with(".lock") {
        return Err("must not end with '/', '.' or '.lock'".to_owned());
    }
    if branch == "@" || branch == "HEAD" {
        return Err("must not be '@' or 'HEAD'".to_owned());
    }
    if branch
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err("no part may start with '.' or end with '.lock'".to_owned());
    }
    Ok(())
}

/// `path` as `a/b` (empty for the repository root): relative, without `..` or `.git`.
pub fn normalize_path(path: &str) -> Result<String, String> {
    if path.len() > MAX_PATH_LEN {
        return Err(format!("must be at most {MAX_PATH_LEN} characters"));
    }
    if path.starts_with('/') {
        return Err("must be relative to the repository root".to_owned());
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err("must not contain control characters or backslashes".to_owned());
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("must not contain '..'".to_owned()),
            _ if part.eq_ignore_ascii_case(".git") => {
                return Err("must not point into '.git'".to_owned())
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// Checks a Git target: the URL's scheme is one of `allowed_schemes` (scp-like `host:path`
/// counts as `ssh`) and carries no password, the branch is a valid branch name, the path is
/// relative without `..`. Errors point at `{pointer_prefix}/target/git/{url,branch,path}`.
pub fn check_target(
    target: &GitTarget,
    allowed_schemes: &[String],
    pointer_prefix: &str,
) -> Result<(), Vec<FieldError>> {
    let pointer = |field: &str| format!("{pointer_prefix}/target/git/{field}");
    let mut errors = Vec::new();
    match check_url(&target.url) {
        Ok(url) => {
            if !allowed_schemes
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&url.scheme))
            {
                errors.push(FieldError::new(
                    pointer("url"),
                    format!(
                        "scheme {:?} is not allowed here (allowed: {})",
                        url.scheme,
                        allowed_schemes.join(", ")
                    ),
                ));
            }
        }
        Err(e) => errors.push(FieldError::new(pointer("url"), e)),
    }
    if let Err(e) = check_branch(&target.branch) {
        errors.push(FieldError::new(pointer("branch"), e));
    }
    if let Err(e) = normalize_path(&target.path) {
        errors.push(FieldError::new(pointer("path"), e));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for (url, scheme) in [
            ("https://github.com/acme/deploy.git", "https"),
            ("http://git.local/acme/deploy", "http"),
            ("ssh://git@github.com/acme/deploy.git", "ssh"),
            ("ssh://github.com:2222/acme/deploy.git", "ssh"),
            ("git@github.com:acme/deploy.git", "ssh"),
            ("github.com:acme/deploy.git", "ssh"),
            ("file:///srv/git/deploy.git", "file"),
            ("https://bot@github.com/acme/deploy.git", "https"),
        ] {
            assert_eq!(
                check_url(url).map(|u| u.scheme),
                Ok(scheme.to_owned()),
                "{url}"
            );
        }
        for url in [
            "",
            "/srv/git/deploy.git",
            "./deploy",
            "https://bot:hunter2@github.com/acme/deploy.git",
            "bot:hunter2@github.com:acme/deploy.git",
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::17",
            "-uhelp",
            "ssh://-oProxyCommand=x/repo",
            "git://github.com/acme/deploy.git",
            "https://github.com",
            "https://github.com/acme/deploy .git",
            "file://",
            "@host:repo",
        ] {
            assert!(check_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn allowed_hosts() {
        let allowed = vec!["GitHub.com".to_owned(), "git.example.com:8443".to_owned()];
        for url in [
            "https://github.com/acme/deploy.git",
            "https://github.com:443/acme/deploy.git",
            "ssh://git@github.com/acme/deploy.git",
            "git@github.com:acme/deploy.git",
            "https://git.example.com:8443/a/b.git",
            "file:///srv/git/x.git",
        ] {
            assert!(host_allowed(&allowed, url), "{url}");
        }
        for url in [
            "https://evil.example/acme/deploy.git",
            "https://github.com.evil.example/a/b.git",
            "https://github.com:8443/a/b.git",
            "https://git.example.com/a/b.git",
            "ssh://git@github.com:2222/a/b.git",
        ] {
            assert!(!host_allowed(&allowed, url), "{url}");
        }
        assert!(!host_allowed(&[], "https://github.com/a/b.git"));
        assert_eq!(parse_allowed_host("[::1]:22"), Ok("[::1]:22".to_owned()));
        for bad in [
            "",
            "https://github.com",
            "*.github.com",
            "a b",
            "host:0",
            "host:x",
            "[zz]",
        ] {
            assert!(parse_allowed_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn branches() {
        for ok in ["main", "gantry/prod", "release-1.2", "feature_x"] {
            assert_eq!(check_branch(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "a b", "a..b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "-a", "/a", "a/",
            "a.lock", "a/.b", "a//b", "a@{1}", "@", "HEAD", "a.", "a\tb",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path(""), Ok(String::new()));
        assert_eq!(normalize_path("."), Ok(String::new()));
        assert_eq!(normalize_path("./"), Ok(String::new()));
        assert_eq!(normalize_path("deploy/prod/"), Ok("deploy/prod".to_owned()));
        assert_eq!(normalize_path("./a//b"), Ok("a/b".to_owned()));
        for bad in ["/abs", "a/../b", "..", ".git", "a/.GIT/hooks", "a\\b"] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
    }
}
