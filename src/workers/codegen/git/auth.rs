//! Credentials for git: an https token as an `Authorization` header, an SSH key in the scratch
//! directory, and scrubbing the secret out of git's output.

use super::target::Transport;
use super::GitError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::path::Path;

/// Username sent with a bare token: GitHub, GitLab and Gitea accept any name with a token.
const TOKEN_USERNAME: &str = "x-access-token";

/// Longest piece of git's output kept in an error.
const MAX_DETAIL_LEN: usize = 2000;

/// How the credentials reach git.
pub(super) enum Auth {
    /// Nothing to pass.
    None,
    /// An `Authorization` header for http(s).
    Header(String),
    /// An SSH private key, to be written into the scratch directory.
    SshKey(String),
}

/// Replaces every piece of the secret in git's output.
#[derive(Default)]
pub(super) struct Scrubber {
    needles: Vec<String>,
}

impl Scrubber {
    /// Adds a secret to scrub.
    pub(super) fn add(&mut self, needle: &str) {
        if !needle.is_empty() {
            self.needles.push(needle.to_owned());
        }
    }

    /// `text` without the secret, trimmed to the last [`MAX_DETAIL_LEN`] bytes and stripped of
    /// git's `hint:` lines.
    pub(super) fn clean(&self, text: &str) -> String {
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
pub(super) fn prepare_auth(
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
pub(super) fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

/// Writes `key` readable by its owner only, refusing to reuse an existing file.
pub(super) fn write_key(path: &Path, key: &str) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
