//! The dashboards and alerts match the binary: every `gantry_*` / `process_*` metric named in
//! `prometheus/` and `grafana/dashboards/` is one the real `gantry` process exports on
//! `/metrics`; every dashboard is provisionable Grafana JSON on the `prometheus` datasource;
//! every alert has its runbook section and both a firing and a non-firing promtool case.
//! (promtool itself runs in CI: `promtool test rules prometheus/alerts_test.yml`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::eventually;
use common::process::{gantry, signal, spawn_serving, wait_for_exit};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The repository root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every dashboard JSON file, sorted.
fn dashboards() -> Vec<PathBuf> {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
}

/// Identifiers (runs of ASCII letters, digits and `_`) in `text` that start with `gantry_` or
/// `process_`: the metric names a PromQL expression, a dashboard or an alert text refers to.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("gantry_") || word.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// Metric families in Prometheus text format: name → type, from the `# TYPE` lines.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// Whether `name`, as written in a query, is a series of an exported family: the family itself,
/// or a histogram's (summary's) `_bucket`, `_sum` and `_count` series.
fn is_exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    if families.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| families.get(base))
            .is_some_and(|kind| kind == "histogram" || (kind == "summary" && *suffix != "_bucket"))
    })
}

/// A running `gantry` stopped when dropped, even when an assertion failed.
struct Running {
    child: Child,
    base: String,
    /// Where its stderr goes (a file: a pipe nobody drains could fill up).
    log: PathBuf,
}

impl Running {
    async fn start(dir: &Path, args: &[&str]) -> Running {
        let log = dir.join("gantry.stderr");
        let stderr = std::fs::File::create(&log).expect("create stderr file");
        let (child, port) = spawn_serving(
            gantry(dir)
                .args(args)
                .env("GANTRY_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(stderr),
        )
        .await;
        let base = format!("http://127.0.0.1:{port}");
        // In a cell so the probe can poll the child; dropped on a panic, it stops the child.
        let running = RefCell::new(Running {
            child,
            base: base.clone(),
            log,
        });
        let exited = eventually(Duration::from_secs(60), || async {
            if let Ok(r) = reqwest::get(format!("{base}/health/ready")).await {
                if r.status().is_success() {
                    return Ok(None);
                }
            }
            let mut running = running.borrow_mut();
            match running.child.try_wait().expect("wait") {
                Some(status) => Ok(Some(status)),
                None => Err(format!(
                    "gantry {args:?} did not become ready\n{}",
                    running.stderr()
                )),
            }
        })
        .await;
        let running = running.into_inner();
        if let Some(status) = exited {
            panic!(
                "gantry {args:?} exited before it was ready: {status}\n{}",
                running.stderr()
            );
        }
        running
    }

    /// What the process wrote on stderr.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(&self.child, false);
            if wait_for_exit(&mut self.child, Duration::from_secs(30)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Gauges with a series per workspace or backup policy (none until one exists).
const PER_ENTITY_GAUGES: [&str; 3] = [
    "gantry_backup_last_success_timestamp_seconds",
    "gantry_backup_policy_last_success_timestamp_seconds",
    "gantry_backup_policy_interval_seconds",
];

#[tokio::test]
async fn every_metric_in_alerts_and_dashboards_is_exported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(dir.path(), &["--server", "--workers", "outbox-publisher"]).await;

    // One API request, so the HTTP families have a child.
    let me = reqwest::get(format!("{}/v1/me", server.base))
        .await
        .expect("GET /v1/me");
    assert_eq!(me.status(), 401, "GET /v1/me without a token");

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), 200);
    let exposition = metrics.text().await.expect("metrics body");
    drop(server);
    let families = families(&exposition);
    assert!(
        families.contains_key("gantry_http_requests_total"),
        "no HTTP metrics after a request:\n{exposition}"
    );

    let mut files = vec![
        repo().join("prometheus/alerts.yml"),
        repo().join("prometheus/alerts_test.yml"),
    ];
    files.extend(dashboards());
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut used = BTreeSet::new();
    // Gauges labelled per workspace or policy have a series only once one exists (there is
    // no value to be born at): they must at least be registered in src/metrics.rs.
    let metrics_source = read(&repo().join("src/metrics.rs"));
    for file in &files {
        for name in metric_tokens(&read(file)) {
            let per_entity = PER_ENTITY_GAUGES.contains(&name.as_str())
                && metrics_source.contains(&format!("\"{name}\""));
            if !per_entity && !is_exported(&name, &families) {
                let relative = file.strip_prefix(repo()).unwrap_or(file);
                missing
                    .entry(name.clone())
                    .or_default()
                    .insert(relative.display().to_string());
            }
            used.insert(name);
        }
    }
    assert!(
        used.len() > 10,
        "found only {used:?}: is the metric scan broken?"
    );
    let report: Vec<String> = missing
        .iter()
        .map(|(name, files)| {
            format!(
                "  {name} (used in {})",
                files
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used by alerts/dashboards but not exported on /metrics:\n{}\n\nexported families: {:?}",
        report.join("\n"),
        families.keys().collect::<Vec<_>>()
    );
}

#[test]
fn metric_scan_finds_names_and_histogram_series() {
    let tokens = metric_tokens(
        "histogram_quantile(0.99, sum by (le) (rate(gantry_outbox_lag_seconds_bucket[5m]))) \
         / process_cpu_seconds_total GANTRY_LOG x_gantry_not \"gantry-api\" gantry:events",
    );
    assert_eq!(
        tokens.into_iter().collect::<Vec<_>>(),
        [
            "gantry_outbox_lag_seconds_bucket",
            "process_cpu_seconds_total"
        ]
    );
    let families = families(
        "# HELP gantry_outbox_lag_seconds x\n# TYPE gantry_outbox_lag_seconds histogram\n\
         # TYPE gantry_jobs_total counter\ngantry_jobs_total{queue=\"probe\"} 0\n",
    );
    assert!(is_exported("gantry_outbox_lag_seconds_bucket", &families));
    assert!(is_exported("gantry_outbox_lag_seconds_count", &families));
    assert!(is_exported("gantry_jobs_total", &families));
    assert!(!is_exported("gantry_jobs_total_count", &families));
    assert!(!is_exported("gantry_jobs", &families));
}

/// `$name` and `${name}` references in `text` (Grafana variables), without built-ins (`$__…`).
fn variable_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in text.match_indices('$') {
        let rest = text[i + 1..].trim_start_matches('{');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.starts_with("__") {
            refs.insert(name);
        }
    }
    refs
}

#[test]
fn dashboards_are_provisionable_grafana_json() {
    let mut uids = BTreeSet::new();
    for file in dashboards() {
        let name = file.display().to_string();
        let dashboard: Value =
            serde_json::from_str(&read(&file)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty() && uid.len() <= 40, "{name}: uid {uid:?}");
        assert!(uids.insert(uid.to_owned()), "{name}: uid {uid} used twice");
        assert!(dashboard["title"].as_str().is_some(), "{name}: title");
        assert!(
            dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36,
            "{name}: schemaVersion"
        );
        assert!(
            dashboard["id"].is_null(),
            "{name}: provisioned dashboards carry no id"
        );

        let variables: BTreeSet<String> = dashboard["templating"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: templating.list"))
            .iter()
            .map(|v| {
                if v["type"] == "query" {
                    assert_eq!(v["datasource"]["uid"], "prometheus", "{name}: variable {v}");
                }
                v["name"].as_str().expect("variable name").to_owned()
            })
            .collect();

        let panels = dashboard["panels"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: panels"));
        assert!(!panels.is_empty(), "{name}: no panels");
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(
                ids.insert(panel["id"].as_u64().expect("panel id")),
                "{name}: id of {title}"
            );
            let grid = &panel["gridPos"];
            for key in ["x", "y", "w", "h"] {
                assert!(grid[key].is_u64(), "{name}: {title}: gridPos.{key}");
            }
            assert!(
                grid["x"].as_u64().unwrap_or(0) + grid["w"].as_u64().unwrap_or(0) <= 24,
                "{name}: {title}: wider than the grid"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert!(
                ["timeseries", "stat", "gauge", "table", "bargauge", "text"]
                    .contains(&panel["type"].as_str().unwrap_or_default()),
                "{name}: {title}: type {}",
                panel["type"]
            );
            assert_eq!(panel["datasource"]["uid"], "prometheus", "{name}: {title}");
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {title}: no targets");
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{name}: {title}: empty expr");
                assert_eq!(target["datasource"]["uid"], "prometheus", "{name}: {title}");
                for var in variable_refs(expr) {
                    assert!(
                        variables.contains(&var),
                        "{name}: {title}: ${var} is not a dashboard variable"
                    );
                }
            }
        }
    }

    let datasource = read(&repo().join("grafana/provisioning/datasources/prometheus.yml"));
    assert!(datasource.contains("uid: prometheus"), "{datasource}");
    let provider = read(&repo().join("grafana/provisioning/dashboards/gantry.yml"));
    assert!(
        provider.contains("/var/lib/grafana/dashboards"),
        "{provider}"
    );
}

#[test]
fn every_alert_has_a_runbook_section_and_firing_and_quiet_tests() {
    let alerts = read(&repo().join("prometheus/alerts.yml"));
    let runbook = read(&repo().join("docs/runbook.md"));
    let tests = read(&repo().join("prometheus/alerts_test.yml"));

    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert!(names.len() >= 9, "alerts found: {names:?}");
    assert_eq!(
        alerts.matches("runbook_url:").count(),
        names.len(),
        "one runbook_url per alert"
    );

    // For each `alertname: X` in the tests, whether that case expects it firing.
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let mut cases: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("alertname:") {
            let expectation = lines[i + 1..]
                .iter()
                .find(|l| l.starts_with("exp_alerts:"))
                .expect("exp_alerts after alertname");
            let entry = cases.entry(name.trim()).or_default();
            if expectation.ends_with("[]") {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
        }
    }

    for name in &names {
        let anchor = name.to_ascii_lowercase();
        assert!(
            alerts.contains(&format!("runbook_url: docs/runbook.md#{anchor}")),
            "{name}: runbook_url must be docs/runbook.md#{anchor}"
        );
        let heading = format!("## {name}");
        assert!(
            runbook.lines().any(|l| l.trim() == heading),
            "docs/runbook.md has no section `## {name}` (anchor #{anchor})"
        );
        let (firing, quiet) = cases.get(name).copied().unwrap_or_default();
        assert!(
            firing > 0 && quiet > 0,
            "{name}: alerts_test.yml has {firing} firing and {quiet} non-firing cases; needs both"
        );
    }
}
