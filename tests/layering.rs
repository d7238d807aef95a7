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

/// The upper modules `text` imports, each with the 1-based line it starts on: named directly
/// (`crate::api…`) or anywhere inside a `crate::{…}` group, nested groups and groups that
/// span lines (as rustfmt writes long imports) included.
fn upward_imports(text: &str) -> Vec<(usize, &'static str)> {
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    for upper in UPPER_MODULES {
        let direct = format!("crate::{upper}");
        for (at, _) in text.match_indices(&direct) {
            let rest = &text[at + direct.len()..];
            if !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '{') {
                found.push((line_of(at), *upper));
            }
        }
    }
    for (at, _) in text.match_indices("crate::{") {
        let group = balanced_group(&text[at + "crate::".len()..]);
        let words = group.split(|c: char| !(c.is_alphanumeric() || c == '_'));
        for word in words {
            if let Some(upper) = UPPER_MODULES.iter().find(|upper| **upper == word) {
                found.push((line_of(at), *upper));
            }
        }
    }
    found
}

/// The `{…}` group `text` starts with, up to its matching brace (nested groups included).
fn balanced_group(text: &str) -> &str {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return &text[..=at];
                }
            }
            _ => {}
        }
    }
    text
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
        for (line, upper) in upward_imports(&text) {
            violations.push(format!(
                "{}:{line}: imports crate::{upper}",
                file.strip_prefix(&src).unwrap_or(file).display(),
            ));
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
    let uppers = |text| -> Vec<&str> { upward_imports(text).into_iter().map(|(_, u)| u).collect() };
    assert_eq!(uppers("use crate::api::codegen::View;"), ["api"]);
    assert_eq!(uppers("use crate::{app, store};"), ["app"]);
    assert_eq!(uppers("use crate::{store, api::x};"), ["api"]);
    assert_eq!(uppers("use crate::{store::{a, b}, api::x};"), ["api"]);
    assert_eq!(
        upward_imports("use std::fmt;\nuse crate::{\n    store,\n    app::AppState,\n};"),
        [(2, "app")]
    );
    assert!(uppers("use crate::apis::x; crate::application").is_empty());
    assert!(uppers("use crate::{store, config};").is_empty());
}
