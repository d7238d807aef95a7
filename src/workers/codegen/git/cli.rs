//! Running the `git` binary: a clean environment, timeouts, and failures sorted into
//! permanent and retryable kinds.

use super::auth::Scrubber;
use super::target::Transport;
use super::{io_error, GitError, AUTHOR_EMAIL, AUTHOR_NAME};
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Environment variables a git child inherits: the program path, temp dir and trust store.
/// Everything else (GIT_TRACE, SSH_AUTH_SOCK, XDG_CONFIG_HOME, proxies, …) is cleared: a proxy
/// would resolve the host itself, past the outbound policy and the pinned address.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
];

/// The git subcommands we run, for messages and classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
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
    /// The subcommand as git spells it, for messages.
    pub(super) fn name(self) -> &'static str {
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
pub(super) struct Output {
    pub(super) success: bool,
    pub(super) code: Option<i32>,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// Everything every git command of one delivery shares: environment, limits, scrubbing.
pub(super) struct Git {
    pub(super) env: Vec<(OsString, OsString)>,
    pub(super) timeout: Duration,
    pub(super) scrubber: Scrubber,
    pub(super) url: String,
}

impl Git {
    /// Runs `git args…` in `cwd`; an exit status other than zero is not an error here.
    pub(super) async fn run(&self, op: Op, cwd: &Path, args: &[&str]) -> Result<Output, GitError> {
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
    pub(super) async fn ok(&self, op: Op, cwd: &Path, args: &[&str]) -> Result<String, GitError> {
        let output = self.run(op, cwd, args).await?;
        if output.success {
            Ok(output.stdout)
        } else {
            Err(self.failure(op, &output))
        }
    }

    /// The error for a failed command, classified from its (scrubbed) messages.
    pub(super) fn failure(&self, op: Op, output: &Output) -> GitError {
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
pub(super) const RACE_REASONS: &[&str] = &[
    "(fetch first)",
    "(non-fast-forward)",
    "(stale info)",
    "(failed to update ref)",
    "(failed to lock)",
    "cannot lock ref",
    "incorrect old value",
];

/// The rejection lines of `git push --porcelain` (`!\t<ref>\t<reason>`).
pub(super) fn rejections(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with('!'))
        .map(|l| l.rsplit('\t').next().unwrap_or(l))
        .collect()
}

/// The environment of every git child of one delivery.
pub(super) fn base_env(
    home: &Path,
    scheme: &str,
    transport: Transport,
) -> Vec<(OsString, OsString)> {
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
pub(super) fn push_config(env: &mut Vec<(OsString, OsString)>, entries: &[(&str, &str)]) {
    env.push(("GIT_CONFIG_COUNT".into(), entries.len().to_string().into()));
    for (i, (key, value)) in entries.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}").into(), (*key).into()));
        env.push((format!("GIT_CONFIG_VALUE_{i}").into(), (*value).into()));
    }
}

#[cfg(test)]
mod tests {
    use super::super::deliver::parse_ls_remote;
    use super::*;

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
