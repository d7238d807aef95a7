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
//!
//! `target` checks where files may go, `auth` prepares the credentials, `cli` runs git and
//! classifies its failures, `deliver` is the fetch / commit / push flow.

mod auth;
mod cli;
mod deliver;
mod target;

pub use deliver::deliver;
pub use target::{check_target, GitTarget};

use crate::webhooks::outbound::OutboundPolicy;
use crate::workers::codegen::GeneratedFile;
use std::time::Duration;

/// Author and committer of Gantry's commits.
pub const AUTHOR_NAME: &str = "Gantry";
/// E-mail of Gantry's commits.
pub const AUTHOR_EMAIL: &str = "gantry@localhost";
/// Commit message used when the caller gives a blank one (git refuses empty messages).
pub const DEFAULT_MESSAGE: &str = "Update generated manifests";
/// How many times a push that lost a race (someone pushed meanwhile) is rebuilt and retried.
pub const PUSH_ATTEMPTS: u32 = 3;

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
    /// Which addresses the remote may have: its host is resolved, checked and the connection
    /// pinned to the checked address.
    pub outbound: &'a OutboundPolicy,
    /// SSH `known_hosts` lines of the secret: when set, unknown host keys are refused.
    pub known_hosts: Option<&'a str>,
}

impl std::fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("target", self.target)
            .field("files", &self.files.len())
            .field("credentials", &self.credentials.map(|_| "[redacted]"))
            .field("message", &self.message)
            .field("timeout", &self.timeout)
            .field("known_hosts", &self.known_hosts.is_some())
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
    /// The remote's host resolves to an address the outbound policy refuses.
    #[error("{0}")]
    Destination(String),
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
            | GitError::Destination(_)
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
