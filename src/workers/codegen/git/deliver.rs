//! The delivery itself: read the remote, build a fresh working copy with the files, commit,
//! push, and start over when another push won the race.

use super::auth::{prepare_auth, shell_quote, write_key, Auth};
use super::cli::{base_env, push_config, rejections, Git, Op, RACE_REASONS};
use super::target::{check_branch, check_files, check_url, normalize_path, Transport};
use super::{io_error, Delivery, GitError, DEFAULT_MESSAGE, PUSH_ATTEMPTS};
use crate::domain::git_target::remote_host_port;
use crate::webhooks::outbound::OutboundError;
use crate::workers::codegen::GeneratedFile;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Where git will connect: the URL's host and port and the checked address to pin it to
/// (`None` for an IP literal, which needs no resolving).
struct Pin {
    host: String,
    port: u16,
    addr: Option<SocketAddr>,
}

/// Resolves the remote's host and checks every address against the outbound policy; `None`
/// for `file://`.
async fn resolve_remote(delivery: &Delivery<'_>) -> Result<Option<Pin>, GitError> {
    let Some((host, port)) = remote_host_port(&delivery.target.url) else {
        return Ok(None);
    };
    let addrs = delivery
        .outbound
        .check_host(&host, port)
        .await
        .map_err(|e| match e {
            OutboundError::Unresolvable(_) => GitError::Unavailable {
                url: delivery.target.url.clone(),
                detail: e.to_string(),
            },
            // The address itself stays out of the message (it says something about the
            // network the tenant should not learn).
            _ => GitError::Destination(format!(
                "{host} does not resolve to a public address, so it cannot be a git target                  (operators may allow ranges with GANTRY_OUTBOUND_ALLOW_CIDRS)"
            )),
        })?;
    let literal = host.parse::<IpAddr>().is_ok();
    Ok(Some(Pin {
        addr: if literal {
            None
        } else {
            addrs.first().copied()
        },
        host,
        port,
    }))
}

/// What the remote holds: the target branch's tip, and the default branch.
pub(super) struct RemoteState {
    pub(super) branch_tip: Option<String>,
    pub(super) default_branch: Option<String>,
}

/// Parses `git ls-remote --symref <url> HEAD refs/heads/<branch>`.
pub(super) fn parse_ls_remote(stdout: &str, branch_ref: &str) -> RemoteState {
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
    let pin = resolve_remote(&delivery).await?;

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
    }
    let resolve_entry;
    if url.transport == Transport::Http {
        // Never follow a redirect, with or without credentials: it could lead anywhere,
        // including past the outbound policy.
        config.push(("http.followRedirects", "false"));
        if let Some(Pin {
            host,
            port,
            addr: Some(addr),
        }) = &pin
        {
            // curl connects to the checked address, whatever DNS answers later.
            let ip = match addr.ip() {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            resolve_entry = format!("{host}:{port}:{ip}");
            config.push(("http.curloptResolve", resolve_entry.as_str()));
        }
    }
    push_config(&mut env, &config);
    if url.transport == Transport::Ssh {
        let known_hosts = scratch.path().join("known_hosts");
        // With the secret's known_hosts, an unknown or changed host key is refused; without,
        // the first key seen is accepted (into a file deleted with the scratch directory).
        let checking = match delivery.known_hosts.filter(|k| !k.trim().is_empty()) {
            Some(lines) => {
                let mut lines = lines.replace("\r\n", "\n");
                if !lines.ends_with('\n') {
                    lines.push('\n');
                }
                write_key(&known_hosts, &lines).map_err(io_error("writing known_hosts"))?;
                "yes"
            }
            None => "accept-new",
        };
        let mut ssh = format!(
            "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking={checking} \
             -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o IdentityAgent=none \
             -o IdentitiesOnly=yes -o ConnectTimeout={}",
            shell_quote(&known_hosts),
            delivery.timeout.as_secs().clamp(1, 60)
        );
        if let Some(Pin {
            host,
            port,
            addr: Some(addr),
        }) = &pin
        {
            // Connect to the checked address; host keys are still looked up by name (in the
            // `[host]:port` form ssh-keyscan writes for other ports).
            let alias = if *port == 22 {
                host.clone()
            } else {
                format!("[{host}]:{port}")
            };
            ssh.push_str(&format!(
                " -o HostName={} -o HostKeyAlias={}",
                shell_quote(Path::new(&addr.ip().to_string())),
                shell_quote(Path::new(&alias))
            ));
        }
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
