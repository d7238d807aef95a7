//! Checks on the files a delivery writes; the Git target rules themselves live in
//! [`crate::domain::git_target`].

use super::GitError;
pub(super) use crate::domain::git_target::{check_branch, check_url, normalize_path, Transport};
pub use crate::domain::git_target::{check_target, GitTarget};
use crate::workers::codegen::GeneratedFile;
use std::collections::BTreeSet;

/// The files' paths, normalized, checked to be distinct and not nested in one another.
pub(super) fn check_files(files: &[GeneratedFile]) -> Result<Vec<String>, GitError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
