//! Delivery of generated files to Git, against local bare repositories (`file://`) and, for
//! the credential paths, loopback servers that play an https or ssh remote.
//!
//! Needs `git` on `PATH`; the ssh test also needs `ssh` and is skipped without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gantry::webhooks::outbound::OutboundPolicy;
use gantry::workers::codegen::git::{
    check_target, deliver, Delivery, GitError, GitTarget, AUTHOR_EMAIL, AUTHOR_NAME, PUSH_ATTEMPTS,
};
use gantry::workers::codegen::GeneratedFile;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The outbound policy of these tests: public addresses plus loopback (the fake remotes).
fn loopback() -> OutboundPolicy {
    OutboundPolicy::new(OutboundPolicy::parse_allow_list("127.0.0.0/8").expect("cidr"))
}

/// Runs git in `cwd` without any user or system configuration; panics on failure.
fn git(cwd: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Someone Else")
        .env("GIT_AUTHOR_EMAIL", "someone@example.com")
        .env("GIT_COMMITTER_NAME", "Someone Else")
        .env("GIT_COMMITTER_EMAIL", "someone@example.com")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A bare repository in a temporary directory.
struct Remote {
    dir: TempDir,
    bare: PathBuf,
    url: String,
}

impl Remote {
    fn new() -> Remote {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("remote.git");
        git(dir.path(), &["init", "-q", "--bare", "remote.git"]);
        let url = format!("file://{}", bare.display());
        Remote { dir, bare, url }
    }

    fn git(&self, args: &[&str]) -> String {
        let mut all = vec!["--git-dir", self.bare.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        git(self.dir.path(), &all)
    }

    /// Every file path on `branch`, sorted.
    fn files(&self, branch: &str) -> Vec<String> {
        self.git(&["ls-tree", "-r", "--name-only", branch])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn show(&self, branch: &str, path: &str) -> String {
        self.git(&["show", &format!("{branch}:{path}")])
    }

    fn tip(&self, branch: &str) -> String {
        self.git(&["rev-parse", &format!("refs/heads/{branch}")])
            .trim()
            .to_owned()
    }

    fn commit_count(&self, branch: &str) -> usize {
        self.git(&["rev-list", "--count", branch])
            .trim()
            .parse()
            .expect("count")
    }

    fn branches(&self) -> Vec<String> {
        self.git(&["for-each-ref", "--format=%(refname:short)", "refs/heads"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Commits `files` on `branch` (on top of its tip, if any) as someone else; returns the
    /// commit.
    fn seed(&self, branch: &str, files: &[(&str, &str)]) -> String {
        let work = self
            .dir
            .path()
            .join(format!("seed-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&work).expect("mkdir");
        git(&work, &["init", "-q"]);
        git(
            &work,
            &["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")],
        );
        if self.branches().iter().any(|b| b == branch) {
            git(&work, &["fetch", "-q", &self.url, branch]);
            git(&work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
        }
        for (path, content) in files {
            let file = work.join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(file, content).expect("write");
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "by someone else"]);
        git(
            &work,
            &[
                "push",
                "-q",
                &self.url,
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        self.tip(branch)
    }

    /// Points the repository's HEAD (its default branch) at `branch`.
    fn set_default(&self, branch: &str) {
        self.git(&["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")]);
    }

    /// Installs an executable hook.
    fn hook(&self, name: &str, script: &str) {
        let path = self.bare.join("hooks").join(name);
        std::fs::write(&path, script).expect("write hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn target(&self, branch: &str, path: &str) -> GitTarget {
        GitTarget {
            url: self.url.clone(),
            branch: branch.to_owned(),
            path: path.to_owned(),
        }
    }
}

fn files(list: &[(&str, &str)]) -> Vec<GeneratedFile> {
    list.iter()
        .map(|(path, content)| GeneratedFile {
            path: (*path).to_owned(),
            media_type: "application/yaml".to_owned(),
            content: content.as_bytes().to_vec(),
        })
        .collect()
}

async fn deliver_files(
    target: &GitTarget,
    files: &[GeneratedFile],
    credentials: Option<&str>,
    message: &str,
) -> Result<String, GitError> {
    deliver(Delivery {
        target,
        files,
        credentials,
        message,
        timeout: TIMEOUT,
        outbound: &loopback(),
        known_hosts: None,
    })
    .await
}

#[tokio::test]
async fn first_delivery_creates_the_branch_in_an_empty_repository() {
    let remote = Remote::new();
    let target = remote.target("gantry", "deploy/prod");
    let bundle = files(&[
        ("deployment-web.yaml", "kind: Deployment\n"),
        ("kustomization.yaml", "resources: []\n"),
        ("db/statefulset.yaml", "kind: StatefulSet\n"),
    ]);
    let message = "Generate manifests for project web (graph v3)\n\nJob 0192.";
    let sha = deliver_files(&target, &bundle, None, message)
        .await
        .expect("delivered");

    assert_eq!(sha, remote.tip("gantry"));
    assert_eq!(
        remote.files("gantry"),
        [
            "deploy/prod/db/statefulset.yaml",
            "deploy/prod/deployment-web.yaml",
            "deploy/prod/kustomization.yaml",
        ]
    );
    assert_eq!(
        remote.show("gantry", "deploy/prod/deployment-web.yaml"),
        "kind: Deployment\n"
    );
    assert_eq!(
        remote
            .git(&["log", "-1", "--format=%B", "gantry"])
            .trim_end(),
        message
    );
    assert_eq!(
        remote
            .git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>", "gantry"])
            .trim(),
        format!("{AUTHOR_NAME} <{AUTHOR_EMAIL}>|{AUTHOR_NAME} <{AUTHOR_EMAIL}>")
    );
    assert_eq!(remote.commit_count("gantry"), 1);
    assert_eq!(remote.branches(), ["gantry"]);
}

#[tokio::test]
async fn redelivery_replaces_the_folder_and_is_idempotent() {
    let remote = Remote::new();
    let target = remote.target("main", "manifests");
    let first = deliver_files(
        &target,
        &files(&[("a.yaml", "a: 1\n"), ("b.yaml", "b: 1\n")]),
        None,
        "first",
    )
    .await
    .expect("first delivery");

    // One file changed, one removed, one added.
    let second_files = files(&[("a.yaml", "a: 2\n"), ("c/c.yaml", "c: 1\n")]);
    let second = deliver_files(&target, &second_files, None, "second")
        .await
        .expect("second delivery");
    assert_ne!(second, first);
    assert_eq!(
        remote.git(&["rev-parse", "main^"]).trim(),
        first,
        "the new commit builds on the first"
    );
    assert_eq!(
        remote.files("main"),
        ["manifests/a.yaml", "manifests/c/c.yaml"]
    );
    assert_eq!(remote.show("main", "manifests/a.yaml"), "a: 2\n");

    // The same files again: no new commit, same answer.
    let third = deliver_files(&target, &second_files, None, "third")
        .await
        .expect("re-delivery");
    assert_eq!(third, second);
    assert_eq!(remote.tip("main"), second);
    assert_eq!(remote.commit_count("main"), 2);
}

#[tokio::test]
async fn files_outside_the_path_are_untouched() {
    let remote = Remote::new();
    let seeded = remote.seed(
        "main",
        &[
            ("README.md", "# ops\n"),
            ("other/keep.yaml", "keep: true\n"),
            ("deploy/old.yaml", "old: true\n"),
            ("deploy/sub/old2.yaml", "old: true\n"),
            ("deployment.yaml", "not in deploy/\n"),
        ],
    );
    let sha = deliver_files(
        &remote.target("main", "./deploy/"),
        &files(&[("web.yaml", "kind: Deployment\n")]),
        None,
        "replace deploy",
    )
    .await
    .expect("delivered");

    assert_eq!(remote.git(&["rev-parse", "main^"]).trim(), seeded);
    assert_eq!(sha, remote.tip("main"));
    assert_eq!(
        remote.files("main"),
        [
            "README.md",
            "deploy/web.yaml",
            "deployment.yaml",
            "other/keep.yaml"
        ]
    );
    assert_eq!(remote.show("main", "README.md"), "# ops\n");
    assert_eq!(remote.show("main", "other/keep.yaml"), "keep: true\n");
    // Only deploy/ changed between the two commits.
    assert_eq!(
        remote.git(&["diff", "--name-only", &seeded, "main"]),
        "deploy/old.yaml\ndeploy/sub/old2.yaml\ndeploy/web.yaml\n"
    );
}

#[tokio::test]
async fn a_new_branch_starts_from_the_default_branch() {
    let remote = Remote::new();
    let main = remote.seed("main", &[("README.md", "# ops\n")]);
    remote.set_default("main");
    let sha = deliver_files(
        &remote.target("gantry/prod", "manifests"),
        &files(&[("web.yaml", "kind: Deployment\n")]),
        None,
        "first on a new branch",
    )
    .await
    .expect("delivered");

    assert_eq!(remote.tip("gantry/prod"), sha);
    assert_eq!(remote.git(&["rev-parse", "gantry/prod^"]).trim(), main);
    assert_eq!(
        remote.files("gantry/prod"),
        ["README.md", "manifests/web.yaml"]
    );
    assert_eq!(remote.tip("main"), main, "the default branch is untouched");
}

#[tokio::test]
async fn the_repository_root_is_replaced_when_path_is_empty() {
    let remote = Remote::new();
    remote.seed("main", &[("README.md", "# ops\n"), ("x/y.yaml", "y\n")]);
    for path in ["", "."] {
        deliver_files(
            &remote.target("main", path),
            &files(&[("web.yaml", "kind: Deployment\n")]),
            None,
            "root",
        )
        .await
        .expect("delivered");
        assert_eq!(remote.files("main"), ["web.yaml"], "path {path:?}");
    }
    assert_eq!(remote.commit_count("main"), 2, "the second was a no-op");
}

#[tokio::test]
async fn a_push_that_loses_a_race_is_rebuilt_on_the_new_tip() {
    let remote = Remote::new();
    remote.seed("main", &[("README.md", "# ops\n")]);
    // Once, while our push is being received, someone else moves the branch.
    let marker = remote.dir.path().join("raced");
    remote.hook(
        "pre-receive",
        &format!(
            r#"#!/bin/sh
[ -e '{marker}' ] && exit 0
touch '{marker}'
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
tip=$(git rev-parse refs/heads/main)
other=$(git commit-tree -p "$tip" -m "pushed meanwhile" "$tip^{{tree}}")
git update-ref refs/heads/main "$other" "$tip"
"#,
            marker = marker.display()
        ),
    );
    let sha = deliver_files(
        &remote.target("main", "deploy"),
        &files(&[("web.yaml", "kind: Deployment\n")]),
        None,
        "ours",
    )
    .await
    .expect("delivered after a retry");

    assert!(marker.exists(), "the hook ran");
    assert_eq!(remote.tip("main"), sha);
    assert_eq!(
        remote
            .git(&["log", "--format=%s", "main"])
            .lines()
            .collect::<Vec<_>>(),
        ["ours", "pushed meanwhile", "by someone else"]
    );
    assert_eq!(remote.files("main"), ["README.md", "deploy/web.yaml"]);
}

#[tokio::test]
async fn a_branch_that_keeps_moving_is_a_retryable_error() {
    let remote = Remote::new();
    remote.seed("main", &[("README.md", "# ops\n")]);
    remote.hook(
        "pre-receive",
        r#"#!/bin/sh
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
tip=$(git rev-parse refs/heads/main)
other=$(git commit-tree -p "$tip" -m "pushed meanwhile" "$tip^{tree}")
git update-ref refs/heads/main "$other" "$tip"
"#,
    );
    let err = deliver_files(
        &remote.target("main", "deploy"),
        &files(&[("web.yaml", "kind: Deployment\n")]),
        None,
        "ours",
    )
    .await
    .expect_err("never wins");
    assert!(
        matches!(err, GitError::Contended { attempts } if attempts == PUSH_ATTEMPTS),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_push_refused_by_the_server_is_permanent() {
    let remote = Remote::new();
    remote.hook(
        "pre-receive",
        "#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n",
    );
    let err = deliver_files(
        &remote.target("main", ""),
        &files(&[("web.yaml", "kind: Deployment\n")]),
        None,
        "ours",
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, GitError::PushRejected { .. }), "{err:?}");
    assert!(err.to_string().contains("branch is protected"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_command_past_the_timeout_is_killed_and_retryable() {
    let remote = Remote::new();
    remote.hook("pre-receive", "#!/bin/sh\nsleep 5\n");
    let started = std::time::Instant::now();
    let target = remote.target("main", "");
    let bundle = files(&[("web.yaml", "kind: Deployment\n")]);
    let err = deliver(Delivery {
        target: &target,
        files: &bundle,
        credentials: None,
        message: "slow",
        timeout: Duration::from_secs(1),
        outbound: &loopback(),
        known_hosts: None,
    })
    .await
    .expect_err("timed out");
    assert!(
        matches!(
            err,
            GitError::Timeout {
                command: "push",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not killed in time"
    );
}

#[tokio::test]
async fn a_missing_repository_is_a_permanent_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = GitTarget {
        url: format!("file://{}/nope.git", dir.path().display()),
        branch: "main".to_owned(),
        path: String::new(),
    };
    let err = deliver_files(&target, &files(&[("a.yaml", "a\n")]), None, "x")
        .await
        .expect_err("no repository");
    assert!(matches!(err, GitError::NotFound { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn invalid_targets_and_files_fail_before_git_runs() {
    let remote = Remote::new();
    for (target, bundle) in [
        (remote.target("a..b", ""), files(&[("a.yaml", "")])),
        (remote.target("main", "../up"), files(&[("a.yaml", "")])),
        (
            GitTarget {
                url: "https://bot:pw@example.com/a/b.git".to_owned(),
                ..remote.target("main", "")
            },
            files(&[("a.yaml", "")]),
        ),
        (remote.target("main", ""), files(&[("../a.yaml", "")])),
        (remote.target("main", ""), files(&[(".git/config", "")])),
        (
            remote.target("main", ""),
            files(&[("a.yaml", ""), ("a.yaml", "")]),
        ),
    ] {
        let err = deliver_files(&target, &bundle, None, "x")
            .await
            .expect_err("refused");
        assert!(
            matches!(err, GitError::InvalidTarget(_) | GitError::InvalidFiles(_)),
            "{target:?}: {err:?}"
        );
        assert!(!err.is_retryable());
    }
    assert!(remote.branches().is_empty());
}

#[test]
fn check_target_points_at_the_offending_fields() {
    let allowed =
        |schemes: &[&str]| -> Vec<String> { schemes.iter().map(|s| (*s).to_owned()).collect() };
    let target = |url: &str, branch: &str, path: &str| GitTarget {
        url: url.to_owned(),
        branch: branch.to_owned(),
        path: path.to_owned(),
    };
    let pointers = |result: Result<(), Vec<gantry::error::FieldError>>| -> Vec<String> {
        result
            .expect_err("rejected")
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    };
    let https_ssh = allowed(&["https", "ssh"]);

    for ok in [
        target("https://github.com/acme/deploy.git", "main", ""),
        target("ssh://git@github.com/acme/deploy.git", "gantry/prod", "."),
        target("git@github.com:acme/deploy.git", "main", "deploy/prod"),
    ] {
        assert_eq!(check_target(&ok, &https_ssh, ""), Ok(()), "{ok:?}");
    }
    assert_eq!(
        check_target(
            &target("file:///srv/git/x.git", "main", ""),
            &allowed(&["file"]),
            ""
        ),
        Ok(())
    );

    // Scheme not allowed here (file in production, ssh when only https is).
    assert_eq!(
        pointers(check_target(
            &target("file:///srv/git/x.git", "main", ""),
            &https_ssh,
            ""
        )),
        ["/target/git/url"]
    );
    assert_eq!(
        pointers(check_target(
            &target("git@github.com:acme/deploy.git", "main", ""),
            &allowed(&["https"]),
            ""
        )),
        ["/target/git/url"]
    );
    // Passwords belong in a secret.
    for url in [
        "https://bot:hunter2@github.com/acme/deploy.git",
        "bot:hunter2@github.com:acme/deploy.git",
    ] {
        let errors = check_target(&target(url, "main", ""), &https_ssh, "").expect_err(url);
        assert_eq!(errors[0].pointer, "/target/git/url");
        assert!(errors[0].detail.contains("password"), "{errors:?}");
        assert!(!errors[0].detail.contains("hunter2"), "{errors:?}");
    }
    for url in ["", "/srv/git/x.git", "ext::sh -c id", "-oProxyCommand=x"] {
        assert_eq!(
            pointers(check_target(&target(url, "main", ""), &https_ssh, "")),
            ["/target/git/url"],
            "{url:?}"
        );
    }
    for branch in [
        "",
        "has space",
        "a..b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "-x",
        "/x",
        "x/",
        "x.lock",
    ] {
        assert_eq!(
            pointers(check_target(
                &target("https://github.com/a/b.git", branch, ""),
                &https_ssh,
                ""
            )),
            ["/target/git/branch"],
            "{branch:?}"
        );
    }
    for path in ["/etc", "../x", "a/../../x", ".git", "a/.git/hooks"] {
        assert_eq!(
            pointers(check_target(
                &target("https://github.com/a/b.git", "main", path),
                &https_ssh,
                ""
            )),
            ["/target/git/path"],
            "{path:?}"
        );
    }
    // Every bad field at once, under the caller's prefix.
    assert_eq!(
        pointers(check_target(
            &target("ftp://x/y", "a b", "/abs"),
            &https_ssh,
            "/jobs/2"
        )),
        [
            "/jobs/2/target/git/url",
            "/jobs/2/target/git/branch",
            "/jobs/2/target/git/path"
        ]
    );
}

#[test]
fn git_target_is_the_api_shape() {
    let target: GitTarget = serde_json::from_value(serde_json::json!({
        "url": "https://github.com/a/b.git", "branch": "main"
    }))
    .expect("path defaults to the root");
    assert_eq!(target.path, "");
    assert!(serde_json::from_value::<GitTarget>(serde_json::json!({
        "url": "https://github.com/a/b.git", "branch": "main", "token": "x"
    }))
    .is_err());
}

/// Every `gantry-git-*` scratch directory that exists now, and the files in them that contain
/// any of `needles`.
fn scan_scratch(needles: &[&str]) -> (usize, Vec<PathBuf>) {
    fn walk(dir: &Path, needles: &[&str], hits: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&path, needles, hits),
                Ok(t) if t.is_file() => {
                    if let Ok(bytes) = std::fs::read(&path) {
                        let text = String::from_utf8_lossy(&bytes);
                        if needles.iter().any(|n| text.contains(n)) {
                            hits.push(path);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut dirs = 0;
    let mut hits = Vec::new();
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("gantry-git-")
            {
                dirs += 1;
                walk(&entry.path(), needles, &mut hits);
            }
        }
    }
    (dirs, hits)
}

/// What the fake https remote saw.
#[derive(Debug, Default)]
struct Seen {
    authorization: Option<String>,
    scratch_dirs: usize,
    leaked_into: Vec<PathBuf>,
}

/// Serves one smart-http discovery request: records the `Authorization` header, looks for the
/// secret in every scratch directory while git is running, and answers with a protocol error
/// that echoes the header back (so the test sees whether git's message is scrubbed).
async fn fake_https_remote(
    listener: tokio::net::TcpListener,
    needles: Vec<String>,
) -> std::io::Result<Seen> {
    let (mut socket, _) = listener.accept().await?;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request).into_owned();
    let authorization = head
        .lines()
        .find_map(|l| l.strip_prefix("Authorization: ").map(str::to_owned));
    let needle_refs: Vec<&str> = needles.iter().map(String::as_str).collect();
    let (scratch_dirs, leaked_into) = scan_scratch(&needle_refs);
    let payload = format!(
        "ERR you sent {} ({})\n",
        authorization.clone().unwrap_or_default(),
        needles.join(" ")
    );
    let pkt = format!("{:04x}{payload}", payload.len() + 4);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{pkt}",
        pkt.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await?;
    Ok(Seen {
        authorization,
        scratch_dirs,
        leaked_into,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_credentials_travel_in_a_header_and_never_leak() {
    use base64::Engine;
    let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let secret = format!("deploy-bot:{token}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&secret);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(fake_https_remote(
        listener,
        vec![token.clone(), encoded.clone()],
    ));
    let target = GitTarget {
        url: format!("http://127.0.0.1:{port}/acme/deploy.git"),
        branch: "main".to_owned(),
        path: "deploy".to_owned(),
    };
    let err = deliver_files(&target, &files(&[("a.yaml", "a\n")]), Some(&secret), "x")
        .await
        .expect_err("the fake remote answers with an error");
    let seen = server.await.expect("server task").expect("server io");

    assert_eq!(
        seen.authorization.as_deref(),
        Some(format!("Basic {encoded}").as_str()),
        "the secret is sent as a Basic Authorization header"
    );
    assert!(seen.scratch_dirs >= 1, "git ran inside a scratch directory");
    assert!(
        seen.leaked_into.is_empty(),
        "the secret was written to {:?}",
        seen.leaked_into
    );
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("[redacted]"),
        "git echoed the header back: {text}"
    );
    for needle in [&token, &encoded, &secret] {
        assert!(!text.contains(needle.as_str()), "leaked: {text}");
    }
}

#[tokio::test]
async fn a_token_with_a_file_url_is_ignored_and_written_nowhere() {
    let remote = Remote::new();
    let secret = format!("bot:tok-{}", uuid::Uuid::new_v4().simple());
    // While our push is received, the hook (whose HOME is inside the scratch directory)
    // records where the scratch directory is and whether any file in it holds the secret.
    let report = remote.dir.path().join("report");
    remote.hook(
        "pre-receive",
        &format!(
            "#!/bin/sh\nscratch=$(dirname \"$HOME\")\necho \"$scratch\" > '{report}'\n\
             if grep -rqF -- '{secret}' \"$scratch\"; then echo leaked >> '{report}'; fi\n",
            report = report.display(),
        ),
    );
    let sha = deliver_files(
        &remote.target("main", ""),
        &files(&[("a.yaml", "a\n")]),
        Some(&secret),
        "with credentials",
    )
    .await
    .expect("delivered");
    assert_eq!(sha, remote.tip("main"));

    let report = std::fs::read_to_string(&report).expect("the hook ran");
    let mut lines = report.lines();
    let scratch = PathBuf::from(lines.next().expect("scratch path"));
    assert!(
        scratch
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("gantry-git-")),
        "{report}"
    );
    assert_eq!(lines.next(), None, "the secret was in a file: {report}");
    assert!(!scratch.exists(), "the scratch directory outlived the call");
    assert!(!remote.git(&["config", "--list"]).contains(&secret));

    // The same secret on a failing delivery: not in the error either.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = GitTarget {
        url: format!("file://{}/nope.git", dir.path().display()),
        branch: "main".to_owned(),
        path: String::new(),
    };
    let err = deliver_files(&missing, &files(&[("a.yaml", "a\n")]), Some(&secret), "x")
        .await
        .expect_err("no repository");
    assert!(!format!("{err} {err:?}").contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_key_lives_only_in_the_scratch_directory_during_the_call() {
    if Command::new("ssh").arg("-V").output().is_err() {
        // Like tests/common's report_skip: in CI a missing tool is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "ssh is not installed, and CI is set: install openssh-client"
        );
        eprintln!("SKIPPED an_ssh_key_lives_only_in_the_scratch_directory_during_the_call: no ssh");
        return;
    }
    let body = format!("b3BlbnNzaC1rZXktdjE{}", uuid::Uuid::new_v4().simple());
    let key =
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // The fake ssh server looks for the key file (and its mode) when ssh connects, then
    // hangs up.
    let needle = body.clone();
    let server = tokio::spawn(async move {
        use std::os::unix::fs::PermissionsExt;
        let (socket, _) = listener.accept().await.expect("accept");
        let found: Vec<(PathBuf, u32)> = scan_scratch(&[&needle])
            .1
            .into_iter()
            .filter_map(|p| {
                let mode = std::fs::metadata(&p).ok()?.permissions().mode() & 0o777;
                Some((p, mode))
            })
            .collect();
        drop(socket);
        found
    });
    let target = GitTarget {
        url: format!("ssh://git@127.0.0.1:{port}/acme/deploy.git"),
        branch: "main".to_owned(),
        path: String::new(),
    };
    let err = deliver_files(&target, &files(&[("a.yaml", "a\n")]), Some(&key), "x")
        .await
        .expect_err("the fake server hangs up");
    let found = server.await.expect("server task");

    assert_eq!(
        found.len(),
        1,
        "exactly the key file holds the key: {found:?}"
    );
    let (key_file, mode) = &found[0];
    assert_eq!(*mode, 0o600, "{key_file:?}");
    assert!(!key_file.exists(), "the key file outlived the call");
    assert!(err.is_retryable(), "a hang-up is the network's: {err:?}");
    assert!(!format!("{err} {err:?}").contains(&body), "{err:?}");
}

/// Answers every connection with `status` (and a `Location` to `location` for a redirect),
/// counting the requests; runs until the test ends.
async fn counting_http_server(
    status: &'static str,
    location: Option<String>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let location = location
                .as_ref()
                .map(|l| format!("Location: {l}\r\n"))
                .unwrap_or_default();
            let response = format!(
                "HTTP/1.1 {status}\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed_with_or_without_credentials() {
    use std::sync::atomic::Ordering;
    let (elsewhere, elsewhere_hits) = counting_http_server("200 OK", None).await;
    let (port, hits) = counting_http_server(
        "302 Found",
        Some(format!(
            "http://127.0.0.1:{elsewhere}/stolen.git/info/refs?service=git-upload-pack"
        )),
    )
    .await;
    let target = GitTarget {
        url: format!("http://127.0.0.1:{port}/acme/deploy.git"),
        branch: "main".to_owned(),
        path: String::new(),
    };
    for credentials in [None, Some("bot:tok-redirect")] {
        let err = deliver_files(&target, &files(&[("a.yaml", "a\n")]), credentials, "x")
            .await
            .expect_err("a redirect is not followed");
        assert!(!err.is_retryable(), "{err:?}");
    }
    assert!(hits.load(Ordering::SeqCst) >= 2, "git asked the remote");
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "git followed a redirect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_on_a_non_public_address_is_refused_before_git_connects() {
    use std::sync::atomic::Ordering;
    let (port, hits) = counting_http_server("200 OK", None).await;
    let bundle = files(&[("a.yaml", "a\n")]);
    for url in [
        format!("http://127.0.0.1:{port}/acme/deploy.git"),
        format!("http://localhost:{port}/acme/deploy.git"),
        format!("ssh://git@127.0.0.1:{port}/acme/deploy.git"),
        "git@localhost:acme/deploy.git".to_owned(),
    ] {
        let target = GitTarget {
            url: url.clone(),
            branch: "main".to_owned(),
            path: String::new(),
        };
        let err = deliver(Delivery {
            target: &target,
            files: &bundle,
            credentials: None,
            message: "x",
            timeout: TIMEOUT,
            // The default policy: public addresses only.
            outbound: &OutboundPolicy::default(),
            known_hosts: None,
        })
        .await
        .expect_err("loopback is not public");
        assert!(matches!(err, GitError::Destination(_)), "{url}: {err:?}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            !text.contains("127.0.0.1:") && !text.contains("::1"),
            "the resolved address is not echoed: {text}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "git connected anyway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_known_hosts_is_the_only_trusted_host_key_file() {
    if Command::new("ssh").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "ssh is not installed, and CI is set: install openssh-client"
        );
        eprintln!("SKIPPED a_secrets_known_hosts_is_the_only_trusted_host_key_file: no ssh");
        return;
    }
    let marker = format!("gantry-test-{}", uuid::Uuid::new_v4().simple());
    let known_hosts = format!(
        "[127.0.0.1]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl {marker}"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // While ssh is connected, the scratch directory holds exactly one file with the lines.
    let needle = marker.clone();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let found = scan_scratch(&[&needle]).1;
        // The ssh client's own command line (Linux): how it treats unknown keys.
        let commands = ssh_command_lines(found.first());
        drop(socket);
        (found, commands)
    });
    let target = GitTarget {
        url: format!("ssh://git@127.0.0.1:{port}/acme/deploy.git"),
        branch: "main".to_owned(),
        path: String::new(),
    };
    let bundle = files(&[("a.yaml", "a\n")]);
    let _ = deliver(Delivery {
        target: &target,
        files: &bundle,
        credentials: None,
        message: "x",
        timeout: TIMEOUT,
        outbound: &loopback(),
        known_hosts: Some(&known_hosts),
    })
    .await
    .expect_err("the fake server hangs up");
    let (found, commands) = server.await.expect("server task");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].file_name().and_then(|n| n.to_str()),
        Some("known_hosts")
    );
    if std::path::Path::new("/proc/self/cmdline").exists() {
        assert!(
            commands
                .iter()
                .any(|c| c.contains("StrictHostKeyChecking=yes")
                    && c.contains("GlobalKnownHostsFile=/dev/null")),
            "unknown host keys must be refused: {commands:?}"
        );
        assert!(
            !commands.iter().any(|c| c.contains("accept-new")),
            "{commands:?}"
        );
    }
}

/// Command lines of running processes that name `file` (from `/proc`; empty elsewhere).
fn ssh_command_lines(file: Option<&PathBuf>) -> Vec<String> {
    let Some(file) = file.map(|f| f.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|line| line.contains(&file) && line.starts_with("ssh "))
        .collect()
}
