//! Delivery of a job's generated files to a Git repository: one commit on one branch, replacing
//! everything under one folder, pushed with the organization's credentials.
//!
//! We drive the `git` command-line client through `tokio::process` instead of a library:
//! `git2` would build libgit2 (plus libssh2/OpenSSL) from C into the binary, and `gix` cannot
//! push yet. The CLI is what every Git host is tested against, handles https and ssh the same
//! way, and is one package in the runtime image. The price is parsing its messages to classify
//! failures, so every invocation runs with a clean, English environment (`LC_ALL=C`, no system
//! or global configuration, no terminal prompts, `HOME` inside the scratch directory).
//!
//! Credentials (an org secret) never reach a command line, a URL or a file that outlives the
//! call: an https token becomes an `Authorization` header passed through `GIT_CONFIG_*`
//! environment variables; an SSH private key is written `0600` into the scratch directory,
//! which is deleted when the call ends (also when it is cancelled). Git's messages are scrubbed
//! of the secret before they go into an error.

use super::GeneratedFile;
use crate::error::FieldError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Author and committer of Gantry's commits.
pub const AUTHOR_NAME: &str = "Gantry";
/// E-mail of Gantry's commits.
pub const AUTHOR_EMAIL: &str = "gantry@localhost";
/// Commit message used when the caller gives a blank one (git refuses empty messages).
pub const DEFAULT_MESSAGE: &str = "Update generated manifests";
/// How many times a push that lost a race (someone pushed meanwhile) is rebuilt and retried.
pub const PUSH_ATTEMPTS: u32 = 3;

const MAX_URL_LEN: usize = 2048;
const MAX_BRANCH_LEN: usize = 200;
const MAX_PATH_LEN: usize = 1024;
/// Username sent with a bare token: GitHub, GitLab and Gitea accept any name with a token.
const TOKEN_USERNAME: &str = "x-access-token";
/// Longest piece of git's output kept in an error.
const MAX_DETAIL_LEN: usize = 2000;
/// Environment variables a git child inherits: the program path, temp dir, trust store and
/// proxies. Everything else (GIT_TRACE, SSH_AUTH_SOCK, XDG_CONFIG_HOME, …) is cleared.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

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

/// One delivery: the files of a job to a target. Its `Debug` hides the credentials.
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    /// Where to.
    pub target: &'a GitTarget,
    /// Exactly the files the folder must hold afterwards.
    pub files: &'a [GeneratedFile],
    /// Secret value: `token` or `user:token` for https, an SSH private key for ssh.
    pub credentials: Option<&'a str>,
    /// Commit message.
    pub message: &'a str,
    /// Limit for each git command; a command running longer is killed.
    pub timeout: Duration,
}

impl std::fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("target", self.target)
            .field("files", &self.files.len())
            .field("credentials", &self.credentials.map(|_| "[redacted]"))
            .field("message", &self.message)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a delivery failed. Messages never contain the credentials.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The target (URL, branch, path) is not acceptable.
    #[error("invalid git target: {0}")]
    InvalidTarget(String),
    /// A file path is not acceptable (absolute, `..`, inside `.git`, duplicated).
    #[error("invalid file: {0}")]
    InvalidFiles(String),
    /// The credentials cannot be used with this URL (an SSH key for https, a token for ssh).
    #[error("unusable credentials: {0}")]
    InvalidCredentials(String),
    /// The remote refused the credentials, or they may not read or write the repository.
    #[error("authentication failed for {url}: {detail}")]
    Auth {
        /// The repository URL.
        url: String,
        /// Git's message (scrubbed).
        detail: String,
    },
    /// The repository does not exist (or is invisible with these credentials).
    #[error("repository not found: {url}: {detail}")]
    NotFound {
        /// The repository URL.
        url: String,
        /// Git's message (scrubbed).
        detail: String,
    },
    /// The remote refused the push for a reason a retry will not change (protected branch,
    /// server-side hook, checked-out branch of a non-bare repository).
    #[error("push to {url} rejected: {detail}")]
    PushRejected {
        /// The repository URL.
        url: String,
        /// Git's message (scrubbed).
        detail: String,
    },
    /// The remote answered in a way a retry will not change (TLS verification, a redirect, an
    /// unexpected 4xx).
    #[error("{url} refused the request: {detail}")]
    Refused {
        /// The repository URL.
        url: String,
        /// Git's message (scrubbed).
        detail: String,
    },
    /// The branch kept moving: every attempt's push lost a race with another pusher.
    #[error("the branch kept moving: gave up after {attempts} attempts")]
    Contended {
        /// Attempts made.
        attempts: u32,
    },
    /// The remote could not be reached or failed on its side (DNS, connection, 5xx).
    #[error("{url} is unavailable: {detail}")]
    Unavailable {
        /// The repository URL.
        url: String,
        /// Git's message (scrubbed).
        detail: String,
    },
    /// A git command ran longer than the timeout and was killed.
    #[error("git {command} timed out after {timeout:?}")]
    Timeout {
        /// The git subcommand.
        command: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// `git` could not be started (is it installed and on `PATH`?).
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    /// Preparing the working copy failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A local git command failed unexpectedly.
    #[error("git {command} failed: {detail}")]
    Command {
        /// The git subcommand.
        command: &'static str,
        /// Git's message (scrubbed).
        detail: String,
    },
}

impl GitError {
    /// Whether trying again later may succeed (network, timeouts, races, local trouble), as
    /// opposed to a problem only the user can fix (target, credentials, permissions).
    pub fn is_retryable(&self) -> bool {
        match self {
            GitError::Contended { .. }
            | GitError::Unavailable { .. }
            | GitError::Timeout { .. }
            | GitError::Io { .. }
            | GitError::Command { .. } => true,
            GitError::InvalidTarget(_)
            | GitError::InvalidFiles(_)
            | GitError::InvalidCredentials(_)
            | GitError::Auth { .. }
            | GitError::NotFound { .. }
            | GitError::PushRejected { .. }
            | GitError::Refused { .. }
            | GitError::Spawn(_) => false,
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GitError {
    let context = context.into();
    move |source| GitError::Io { context, source }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// How git reaches a repository, which decides how credentials are passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http,
    Ssh,
    File,
}

/// A URL that passed validation: its scheme (`https`, `http`, `ssh`, `file`) and transport.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckedUrl {
    scheme: String,
    transport: Transport,
}

/// Checks `url` is a repository URL git will treat as such, without a password.
fn check_url(url: &str) -> Result<CheckedUrl, String> {
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

/// Checks `branch` is a branch name git accepts (`git check-ref-format --branch`).
fn check_branch(branch: &str) -> Result<(), String> {
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
fn normalize_path(path: &str) -> Result<String, String> {
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

/// The files' paths, normalized, checked to be distinct and not nested in one another.
fn check_files(files: &[GeneratedFile]) -> Result<Vec<String>, GitError> {
    let mut paths = Vec::with_capacity(files.len());
    let mut seen = BTreeSet::new();
    for file in files {
        let path = normalize_path(&file.path)
            .map_err(|e| GitError::InvalidFiles(format!("{:?} {e}", file.path)))?;
        if path.is_empty() {
            return Err(GitError::InvalidFiles(format!(
                "{:?} does not name a file",
                file.path
            )));
        }
        if !seen.insert(path.clone()) {
            return Err(GitError::InvalidFiles(format!("{path:?} appears twice")));
        }
        paths.push(path);
    }
    for path in &paths {
        let mut prefix = path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if seen.contains(parent) {
                return Err(GitError::InvalidFiles(format!(
                    "{parent:?} is both a file and the folder of {path:?}"
                )));
            }
            prefix = parent;
        }
    }
    Ok(paths)
}

// ---------------------------------------------------------------------------------------------
// Credentials

/// How the credentials reach git.
enum Auth {
    /// Nothing to pass.
    None,
    /// An `Authorization` header for http(s).
    Header(String),
    /// An SSH private key, to be written into the scratch directory.
    SshKey(String),
}

/// Replaces every piece of the secret in git's output.
#[derive(Default)]
struct Scrubber {
    needles: Vec<String>,
}

impl Scrubber {
    fn add(&mut self, needle: &str) {
        if !needle.is_empty() {
            self.needles.push(needle.to_owned());
        }
    }

    /// `text` without the secret, trimmed to the last [`MAX_DETAIL_LEN`] bytes and stripped of
    /// git's `hint:` lines.
    fn clean(&self, text: &str) -> String {
        let mut text = text.to_owned();
        // Longest first, so a piece contained in a longer one cannot leave a remainder.
        let mut needles: Vec<&String> = self.needles.iter().collect();
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for needle in needles {
            text = text.replace(needle.as_str(), "[redacted]");
        }
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
            .collect();
        let joined = lines.join("\n");
        if joined.len() <= MAX_DETAIL_LEN {
            return joined;
        }
        let mut start = joined.len() - MAX_DETAIL_LEN;
        while !joined.is_char_boundary(start) {
            start += 1;
        }
        format!("…{}", &joined[start..])
    }
}

/// Decides how `credentials` are passed for `transport`, and what to scrub.
fn prepare_auth(
    transport: Transport,
    credentials: Option<&str>,
) -> Result<(Auth, Scrubber), GitError> {
    let mut scrubber = Scrubber::default();
    let Some(value) = credentials.filter(|v| !v.trim().is_empty()) else {
        return Ok((Auth::None, scrubber));
    };
    scrubber.add(value);
    scrubber.add(value.trim());
    let is_key = value.trim_start().starts_with("-----BEGIN");
    match transport {
        // A local repository needs no credentials; they are ignored.
        Transport::File => Ok((Auth::None, scrubber)),
        Transport::Http => {
            if is_key {
                return Err(GitError::InvalidCredentials(
                    "the secret holds an SSH private key, but the URL is http(s): use a token, \
                     or an ssh URL"
                        .to_owned(),
                ));
            }
            let value = value.trim();
            let pair = match value.split_once(':') {
                Some((_, token)) => {
                    scrubber.add(token);
                    value.to_owned()
                }
                None => format!("{TOKEN_USERNAME}:{value}"),
            };
            let encoded = BASE64.encode(pair.as_bytes());
            scrubber.add(&encoded);
            Ok((
                Auth::Header(format!("Authorization: Basic {encoded}")),
                scrubber,
            ))
        }
        Transport::Ssh => {
            if !is_key {
                return Err(GitError::InvalidCredentials(
                    "an ssh URL needs an SSH private key in the secret (starting with \
                     -----BEGIN); a token works with https URLs"
                        .to_owned(),
                ));
            }
            // Pasted keys often arrive with CRLF or without the final newline ssh requires.
            let mut key = value.trim().replace("\r\n", "\n");
            key.push('\n');
            for line in key.lines() {
                if !line.starts_with("-----") && line.len() >= 8 {
                    scrubber.add(line);
                }
            }
            Ok((Auth::SshKey(key), scrubber))
        }
    }
}

/// Quotes `path` for the shell that runs `GIT_SSH_COMMAND`.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

/// Writes `key` readable by its owner only, refusing to reuse an existing file.
fn write_key(path: &Path, key: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(key.as_bytes())?;
    file.sync_all()
}

// ---------------------------------------------------------------------------------------------
// Running git

/// The git subcommands we run, for messages and classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Init,
    SymbolicRef,
    LsRemote,
    Fetch,
    Checkout,
    Add,
    Diff,
    Commit,
    RevParse,
    Push,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Init => "init",
            Op::SymbolicRef => "symbolic-ref",
            Op::LsRemote => "ls-remote",
            Op::Fetch => "fetch",
            Op::Checkout => "checkout",
            Op::Add => "add",
            Op::Diff => "diff",
            Op::Commit => "commit",
            Op::RevParse => "rev-parse",
            Op::Push => "push",
        }
    }

    /// Whether the command talks to the remote (its failures may be the network's).
    fn is_remote(self) -> bool {
        matches!(self, Op::LsRemote | Op::Fetch | Op::Push)
    }
}

/// What a finished git command left.
struct Output {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Everything every git command of one delivery shares: environment, limits, scrubbing.
struct Git {
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    scrubber: Scrubber,
    url: String,
}

impl Git {
    /// Runs `git args…` in `cwd`; an exit status other than zero is not an error here.
    async fn run(&self, op: Op, cwd: &Path, args: &[&str]) -> Result<Output, GitError> {
        let mut command = Command::new("git");
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropping the future on timeout drops the child, which kills it.
            .kill_on_drop(true);
        tracing::debug!(command = op.name(), "running git");
        let child = command.spawn().map_err(GitError::Spawn)?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| GitError::Timeout {
                command: op.name(),
                timeout: self.timeout,
            })?
            .map_err(io_error(format!("waiting for git {}", op.name())))?;
        Ok(Output {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs `git args…` and requires success; returns stdout.
    async fn ok(&self, op: Op, cwd: &Path, args: &[&str]) -> Result<String, GitError> {
        let output = self.run(op, cwd, args).await?;
        if output.success {
            Ok(output.stdout)
        } else {
            Err(self.failure(op, &output))
        }
    }

    /// The error for a failed command, classified from its (scrubbed) messages.
    fn failure(&self, op: Op, output: &Output) -> GitError {
        let mut detail = self.scrubber.clean(&output.stderr);
        if detail.is_empty() {
            detail = match output.code {
                Some(code) => format!("exited with status {code}"),
                None => "killed by a signal".to_owned(),
            };
        }
        classify(op, &self.url, detail)
    }
}

/// Sorts a failure into permanent and retryable kinds by git's (`LC_ALL=C`) messages.
fn classify(op: Op, url: &str, detail: String) -> GitError {
    if !op.is_remote() {
        return GitError::Command {
            command: op.name(),
            detail,
        };
    }
    let text = detail.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let url = url.to_owned();
    if has(&[
        "does not appear to be a git repository",
        "repository not found",
        "returned error: 404",
        "no such repository",
    ]) || (text.contains("repository") && text.contains("not found"))
    {
        return GitError::NotFound { url, detail };
    }
    if has(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "permission denied",
        "permission to",
        "access denied",
        "returned error: 401",
        "returned error: 403",
        "invalid username or password",
        "invalid credentials",
        "host key verification failed",
    ]) {
        return GitError::Auth { url, detail };
    }
    if has(&[
        "ssl certificate problem",
        "certificate verify failed",
        "server certificate verification failed",
        "returned error: 30",
        "returned error: 400",
        "returned error: 405",
        "returned error: 410",
        "returned error: 411",
        "returned error: 413",
        "returned error: 422",
    ]) {
        return GitError::Refused { url, detail };
    }
    // Everything else on the wire (DNS, refused or reset connections, 5xx, 429, hang-ups,
    // "couldn't find remote ref" after a concurrent delete) may pass: retry later.
    GitError::Unavailable { url, detail }
}

/// Reasons `git push --porcelain` gives when another push won a race.
const RACE_REASONS: &[&str] = &[
    "(fetch first)",
    "(non-fast-forward)",
    "(stale info)",
    "(failed to update ref)",
    "(failed to lock)",
    "cannot lock ref",
    "incorrect old value",
];

/// The rejection lines of `git push --porcelain` (`!\t<ref>\t<reason>`).
fn rejections(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with('!'))
        .map(|l| l.rsplit('\t').next().unwrap_or(l))
        .collect()
}

/// The environment of every git child of one delivery.
fn base_env(home: &Path, scheme: &str, transport: Transport) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = INHERITED_ENV
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|v| (OsString::from(name), v)))
        .collect();
    let mut set = |k: &str, v: &str| env.push((k.into(), v.into()));
    set("HOME", &home.to_string_lossy());
    set("XDG_CONFIG_HOME", &home.join(".config").to_string_lossy());
    set("GIT_CONFIG_NOSYSTEM", "1");
    set("GIT_CONFIG_GLOBAL", "/dev/null");
    set("GIT_TERMINAL_PROMPT", "0");
    set("GCM_INTERACTIVE", "never");
    // English messages: failures are classified by their text.
    set("LC_ALL", "C");
    set("LANG", "C");
    // Only the URL's own transport: no `ext::`, no redirect from https to http or file.
    set("GIT_ALLOW_PROTOCOL", scheme);
    // Paths are data, never pathspec magic.
    set("GIT_LITERAL_PATHSPECS", "1");
    set("GIT_AUTHOR_NAME", AUTHOR_NAME);
    set("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL);
    set("GIT_COMMITTER_NAME", AUTHOR_NAME);
    set("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL);
    if transport == Transport::Http {
        // A stalled transfer gives up well before the kill, so the https helper ends too.
        set("GIT_HTTP_LOW_SPEED_LIMIT", "1000");
        set("GIT_HTTP_LOW_SPEED_TIME", "30");
    }
    env
}

/// Configuration passed through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`:
/// never written to a file, never on a command line.
fn push_config(env: &mut Vec<(OsString, OsString)>, entries: &[(&str, &str)]) {
    env.push(("GIT_CONFIG_COUNT".into(), entries.len().to_string().into()));
    for (i, (key, value)) in entries.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}").into(), (*key).into()));
        env.push((format!("GIT_CONFIG_VALUE_{i}").into(), (*value).into()));
    }
}

// ---------------------------------------------------------------------------------------------
// Delivering

/// What the remote holds: the target branch's tip, and the default branch.
struct RemoteState {
    branch_tip: Option<String>,
    default_branch: Option<String>,
}

/// Parses `git ls-remote --symref <url> HEAD refs/heads/<branch>`.
fn parse_ls_remote(stdout: &str, branch_ref: &str) -> RemoteState {
    let mut state = RemoteState {
        branch_tip: None,
        default_branch: None,
    };
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("ref: ") {
            if let Some((target, "HEAD")) = rest.split_once('\t') {
                state.default_branch = target.strip_prefix("refs/heads/").map(str::to_owned);
            }
        } else if let Some((sha, name)) = line.split_once('\t') {
            if name == branch_ref {
                state.branch_tip = Some(sha.to_owned());
            }
        }
    }
    state
}

/// How one attempt ended.
enum Attempt {
    /// The branch holds the files at this commit.
    Done(String),
    /// Someone pushed meanwhile: start over from the new tip.
    Raced,
}

/// Replaces `path` (empty: the root, except `.git`) in `work` with exactly `files`.
async fn write_tree(
    work: &Path,
    path: &str,
    files: &[GeneratedFile],
    paths: &[String],
) -> Result<(), GitError> {
    let work = work.to_owned();
    let path = path.to_owned();
    let contents: Vec<(String, Vec<u8>)> = paths
        .iter()
        .cloned()
        .zip(files.iter().map(|f| f.content.clone()))
        .collect();
    tokio::task::spawn_blocking(move || write_tree_blocking(&work, &path, &contents))
        .await
        .map_err(|e| GitError::Io {
            context: "writing the files".to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?
}

fn write_tree_blocking(
    work: &Path,
    path: &str,
    contents: &[(String, Vec<u8>)],
) -> Result<(), GitError> {
    let target = if path.is_empty() {
        for entry in std::fs::read_dir(work).map_err(io_error("reading the working copy"))? {
            let entry = entry.map_err(io_error("reading the working copy"))?;
            if entry.file_name() != ".git" {
                remove_entry(&entry.path())?;
            }
        }
        work.to_owned()
    } else {
        // Each folder on the way must be a real folder: a symlink committed there could lead
        // the writes out of the working copy, so it is replaced like any other file in the way.
        let mut current = work.to_owned();
        let parts: Vec<&str> = path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            current.push(part);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() && !last => continue,
                Ok(_) => remove_entry(&current)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(format!("inspecting {part}"))(e)),
            }
            std::fs::create_dir(&current).map_err(io_error(format!("creating {part}")))?;
        }
        current
    };
    for (relative, content) in contents {
        let file = target.join(relative);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_error(format!("creating the folder of {relative}")))?;
        }
        std::fs::write(&file, content).map_err(io_error(format!("writing {relative}")))?;
    }
    Ok(())
}

/// Removes a file, symlink or folder (without following symlinks).
fn remove_entry(path: &Path) -> Result<(), GitError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(io_error(format!("inspecting {}", path.display())))?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .map_err(io_error(format!("removing {}", path.display())))
}

/// One try: fresh working copy from the remote's current state, files written, committed if
/// anything changed, pushed.
async fn attempt(
    git: &Git,
    scratch: &Path,
    work: &Path,
    delivery: &Delivery<'_>,
    path: &str,
    paths: &[String],
) -> Result<Attempt, GitError> {
    let url = delivery.target.url.as_str();
    let branch = delivery.target.branch.as_str();
    let branch_ref = format!("refs/heads/{branch}");
    let work_str = work.to_string_lossy();
    // No templates: nothing (hooks included) comes from the host's git installation.
    git.ok(Op::Init, scratch, &["init", "-q", "--template=", &work_str])
        .await?;
    git.ok(
        Op::SymbolicRef,
        work,
        &["symbolic-ref", "HEAD", &branch_ref],
    )
    .await?;

    let listed = git
        .ok(
            Op::LsRemote,
            work,
            &["ls-remote", "--symref", "--", url, "HEAD", &branch_ref],
        )
        .await?;
    let remote = parse_ls_remote(&listed, &branch_ref);
    let branch_exists = remote.branch_tip.is_some();
    let start = match (&remote.branch_tip, &remote.default_branch) {
        (Some(_), _) => Some(branch.to_owned()),
        (None, Some(default)) => Some(default.clone()),
        // An empty repository (or one whose HEAD names no branch): the branch starts empty.
        (None, None) => None,
    };
    let base = match start {
        Some(start) => {
            let tracking = format!("refs/remotes/origin/{start}");
            let refspec = format!("+refs/heads/{start}:{tracking}");
            git.ok(
                Op::Fetch,
                work,
                &["fetch", "-q", "--depth=1", "--no-tags", "--", url, &refspec],
            )
            .await?;
            git.ok(
                Op::Checkout,
                work,
                &["checkout", "-q", "--no-track", "-B", branch, &tracking],
            )
            .await?;
            let sha = git
                .ok(Op::RevParse, work, &["rev-parse", "--verify", "HEAD"])
                .await?;
            Some(sha.trim().to_owned())
        }
        None => None,
    };

    write_tree(work, path, delivery.files, paths).await?;
    // The top folder of `path` covers a symlink or file replaced on the way to it.
    let pathspec = path
        .split('/')
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or(".");
    // `--force`: a .gitignore in the repository must not silently drop generated files.
    git.ok(Op::Add, work, &["add", "-A", "-f", "--", pathspec])
        .await?;
    let diff = git
        .run(Op::Diff, work, &["diff", "--cached", "--quiet"])
        .await?;
    let changed = match diff.code {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(git.failure(Op::Diff, &diff)),
    };

    let sha = match (&base, changed) {
        // Idempotent re-delivery: the branch already holds exactly these files.
        (Some(sha), false) if branch_exists => return Ok(Attempt::Done(sha.clone())),
        // A new branch with the default branch's content: only the branch needs creating.
        (Some(sha), false) => sha.clone(),
        _ => {
            let message = if delivery.message.trim().is_empty() {
                DEFAULT_MESSAGE
            } else {
                delivery.message
            };
            let mut args = vec![
                "commit",
                "-q",
                "--no-verify",
                "--no-gpg-sign",
                "--cleanup=whitespace",
                "-m",
                message,
            ];
            if !changed {
                // No files for an empty repository: an empty commit still creates the branch.
                args.push("--allow-empty");
            }
            git.ok(Op::Commit, work, &args).await?;
            let sha = git
                .ok(Op::RevParse, work, &["rev-parse", "--verify", "HEAD"])
                .await?;
            sha.trim().to_owned()
        }
    };

    let refspec = format!("HEAD:{branch_ref}");
    let pushed = git
        .run(
            Op::Push,
            work,
            &["push", "--porcelain", "--no-verify", "--", url, &refspec],
        )
        .await?;
    if pushed.success {
        return Ok(Attempt::Done(sha));
    }
    let rejected = rejections(&pushed.stdout);
    if !rejected.is_empty() {
        if rejected
            .iter()
            .all(|r| RACE_REASONS.iter().any(|reason| r.contains(reason)))
        {
            return Ok(Attempt::Raced);
        }
        let mut detail = git.scrubber.clean(&rejected.join("\n"));
        let stderr = git.scrubber.clean(&pushed.stderr);
        if !stderr.is_empty() {
            detail = format!("{detail}\n{stderr}");
        }
        return Err(GitError::PushRejected {
            url: url.to_owned(),
            detail,
        });
    }
    Err(git.failure(Op::Push, &pushed))
}

/// Commits `files` under the target's path on the target's branch and pushes; returns the
/// branch's commit. Delivering the same files again changes nothing and returns the same
/// commit. A push that loses a race is rebuilt on the new tip, up to [`PUSH_ATTEMPTS`] times.
pub async fn deliver(delivery: Delivery<'_>) -> Result<String, GitError> {
    let target = delivery.target;
    let url = check_url(&target.url).map_err(|e| GitError::InvalidTarget(format!("url {e}")))?;
    check_branch(&target.branch).map_err(|e| GitError::InvalidTarget(format!("branch {e}")))?;
    let path =
        normalize_path(&target.path).map_err(|e| GitError::InvalidTarget(format!("path {e}")))?;
    let paths = check_files(delivery.files)?;
    let (auth, scrubber) = prepare_auth(url.transport, delivery.credentials)?;

    // Everything (working copies, HOME, the key) lives here and is deleted on drop, also when
    // the future is cancelled.
    let scratch = tempfile::Builder::new()
        .prefix("gantry-git-")
        .tempdir()
        .map_err(io_error("creating a scratch directory"))?;
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).map_err(io_error("creating a scratch directory"))?;

    let mut env = base_env(&home, &url.scheme, url.transport);
    let mut config: Vec<(&str, &str)> = vec![
        ("credential.helper", ""),
        ("core.hooksPath", "/dev/null"),
        ("core.autocrlf", "false"),
        ("core.fsmonitor", "false"),
        ("commit.gpgSign", "false"),
        ("gc.auto", "0"),
        ("maintenance.auto", "false"),
        ("advice.detachedHead", "false"),
    ];
    if let Auth::Header(header) = &auth {
        config.push(("http.extraHeader", header.as_str()));
        // The header must not follow a redirect to another host.
        config.push(("http.followRedirects", "false"));
    }
    push_config(&mut env, &config);
    if url.transport == Transport::Ssh {
        let known_hosts = scratch.path().join("known_hosts");
        let mut ssh = format!(
            "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
             -o UserKnownHostsFile={} -o IdentityAgent=none -o IdentitiesOnly=yes \
             -o ConnectTimeout={}",
            shell_quote(&known_hosts),
            delivery.timeout.as_secs().clamp(1, 60)
        );
        match &auth {
            Auth::SshKey(key) => {
                let key_path = scratch.path().join("id_gantry");
                write_key(&key_path, key).map_err(io_error("writing the SSH key"))?;
                ssh.push_str(&format!(" -i {}", shell_quote(&key_path)));
            }
            // Without a secret no key at all: never the host's own keys.
            _ => ssh.push_str(" -o IdentityFile=none"),
        }
        env.push(("GIT_SSH_COMMAND".into(), ssh.into()));
        env.push(("GIT_SSH_VARIANT".into(), "ssh".into()));
    }

    let git = Git {
        env,
        timeout: delivery.timeout,
        scrubber,
        url: target.url.clone(),
    };
    for n in 1..=PUSH_ATTEMPTS {
        let work = scratch.path().join(format!("attempt-{n}"));
        match attempt(&git, scratch.path(), &work, &delivery, &path, &paths).await? {
            Attempt::Done(sha) => return Ok(sha),
            Attempt::Raced => {
                tracing::info!(url = %target.url, branch = %target.branch, attempt = n,
                    "push lost a race with another pusher; rebuilding on the new tip");
            }
        }
    }
    Err(GitError::Contended {
        attempts: PUSH_ATTEMPTS,
    })
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

    #[test]
    fn files_must_not_collide() {
        let file = |path: &str| GeneratedFile {
            path: path.to_owned(),
            media_type: "application/yaml".to_owned(),
            content: Vec::new(),
        };
        assert!(check_files(&[file("a.yaml"), file("b/c.yaml")]).is_ok());
        for bad in [
            vec![file("a.yaml"), file("./a.yaml")],
            vec![file("a"), file("a/b.yaml")],
            vec![file("../x.yaml")],
            vec![file(".")],
            vec![file(".git/config")],
        ] {
            assert!(
                matches!(check_files(&bad), Err(GitError::InvalidFiles(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn credentials_are_scrubbed_and_matched_to_the_transport() {
        let (auth, scrubber) =
            prepare_auth(Transport::Http, Some("bot:s3cr3t-token")).expect("token");
        let Auth::Header(header) = auth else {
            panic!("expected a header")
        };
        let encoded = BASE64.encode("bot:s3cr3t-token");
        assert_eq!(header, format!("Authorization: Basic {encoded}"));
        let cleaned = scrubber.clean(&format!(
            "fatal: s3cr3t-token bot:s3cr3t-token {encoded}\nhint: ignore me"
        ));
        assert!(!cleaned.contains("s3cr3t"), "{cleaned}");
        assert!(!cleaned.contains(&encoded), "{cleaned}");
        assert!(!cleaned.contains("hint"), "{cleaned}");

        let (auth, _) = prepare_auth(Transport::Http, Some("ghp_abc\n")).expect("token");
        let Auth::Header(header) = auth else {
            panic!("expected a header")
        };
        let expected = BASE64.encode(format!("{TOKEN_USERNAME}:ghp_abc"));
        assert_eq!(header, format!("Authorization: Basic {expected}"));

        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\r\nb3BlbnNzaC1rZXktdjEAAAAA\r\n-----END OPENSSH PRIVATE KEY-----";
        assert!(matches!(
            prepare_auth(Transport::Http, Some(key)),
            Err(GitError::InvalidCredentials(_))
        ));
        assert!(matches!(
            prepare_auth(Transport::Ssh, Some("ghp_abc")),
            Err(GitError::InvalidCredentials(_))
        ));
        let (auth, scrubber) = prepare_auth(Transport::Ssh, Some(key)).expect("key");
        let Auth::SshKey(written) = auth else {
            panic!("expected a key")
        };
        assert!(written.ends_with("-----\n") && !written.contains('\r'));
        assert!(!scrubber
            .clean("Load key b3BlbnNzaC1rZXktdjEAAAAA")
            .contains("b3BlbnNz"));
        assert!(matches!(
            prepare_auth(Transport::File, Some("anything")),
            Ok((Auth::None, _))
        ));
    }

    #[test]
    fn failures_are_classified() {
        let url = "https://example.com/a/b.git";
        let kind = |op, text: &str| classify(op, url, text.to_owned()).is_retryable();
        assert!(!kind(
            Op::Fetch,
            "remote: Repository not found.\nfatal: repository 'x' not found"
        ));
        assert!(!kind(
            Op::LsRemote,
            "fatal: could not read Username for 'https://example.com': terminal prompts disabled"
        ));
        assert!(!kind(Op::Push, "git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository."));
        assert!(!kind(
            Op::LsRemote,
            "fatal: unable to access 'x': SSL certificate problem: self-signed certificate"
        ));
        assert!(kind(
            Op::LsRemote,
            "fatal: unable to access 'x': Could not resolve host: example.com"
        ));
        assert!(kind(
            Op::LsRemote,
            "fatal: unable to access 'x': The requested URL returned error: 503"
        ));
        assert!(kind(Op::Fetch, "ssh: connect to host example.com port 22: Connection refused\nfatal: Could not read from remote repository."));
        assert!(matches!(
            classify(
                Op::LsRemote,
                url,
                "fatal: 'x' does not appear to be a git repository".to_owned()
            ),
            GitError::NotFound { .. }
        ));
        assert!(matches!(
            classify(Op::Commit, url, "boom".to_owned()),
            GitError::Command { .. }
        ));
    }

    #[test]
    fn porcelain_rejections() {
        let stdout = "To x\n!\tHEAD:refs/heads/main\t[rejected] (fetch first)\nDone\n";
        assert_eq!(rejections(stdout), ["[rejected] (fetch first)"]);
        let state = parse_ls_remote(
            "ref: refs/heads/main\tHEAD\nabc\tHEAD\ndef\trefs/heads/gantry\n",
            "refs/heads/gantry",
        );
        assert_eq!(state.default_branch.as_deref(), Some("main"));
        assert_eq!(state.branch_tip.as_deref(), Some("def"));
    }
}
