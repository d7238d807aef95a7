//! The layering rule, checked: nothing below the HTTP layer imports it. Workers, jobs, stores,
//! auth, domain rules, resource representations, the outbox and webhooks may not name
//! `crate::api` or `crate::app`; only `api/`, `app.rs`, `startup.rs`, `bench.rs` and `main.rs`
//! sit above them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// The lower layers, relative to `src/`.
const LOWER_LAYERS: &[&str] = &[
    "workers",
    "jobs",
    "store",
    "auth",
    "domain",
    "resources",
    "outbox",
    "webhooks",
    "state.rs",
    "error.rs",
    "config",
    "metrics.rs",
];

/// The modules a lower layer must not import.
const UPPER_MODULES: &[&str] = &["api", "app"];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .expect("read a source directory")
            .map(|entry| entry.expect("read a directory entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|ext| ext == "rs") {
        out.push(path.to_owned());
    }
}

/// The upper modules `line` names: as `crate::api…` or inside a `crate::{…}` group on it.
fn upward_imports(line: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for upper in UPPER_MODULES {
        let direct = format!("crate::{upper}");
        let named_directly = line.match_indices(&direct).any(|(at, _)| {
            let rest = &line[at + direct.len()..];
            !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
        });
        let named_in_group = line.split("crate::{").skip(1).any(|group| {
            group
                .split('}')
                .next()
                .unwrap_or_default()
                .split([',', ' ', ':'])
                .any(|word| word == *upper)
        });
        if named_directly || named_in_group {
            found.push(*upper);
        }
    }
    found
}

#[test]
fn lower_layers_do_not_import_the_http_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for layer in LOWER_LAYERS {
        let path = src.join(layer);
        assert!(
            path.exists(),
            "{} is gone: update LOWER_LAYERS",
            path.display()
        );
        rust_files(&path, &mut files);
    }
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (number, line) in text.lines().enumerate() {
            for upper in upward_imports(line) {
                violations.push(format!(
                    "{}:{}: imports crate::{upper}: {}",
                    file.strip_prefix(&src).unwrap_or(file).display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_both_spellings() {
    assert_eq!(upward_imports("use crate::api::codegen::View;"), ["api"]);
    assert_eq!(upward_imports("use crate::{app, store};"), ["app"]);
    assert_eq!(upward_imports("use crate::{store, api::x};"), ["api"]);
    assert!(upward_imports("use crate::apis::x; crate::application").is_empty());
    assert!(upward_imports("use crate::{store, config};").is_empty());
}
