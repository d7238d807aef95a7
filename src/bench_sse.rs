//! `gantry bench sse --streams N --seconds S`: N idle event streams against a `gantry --server`
//! child process (embedded mode: a temporary SQLite file and data dir, dev auth, a free loopback
//! port). Prints the server's CPU share while the streams sit idle, its resident set before and
//! with the streams open, and how many streams received one event (`workspace.requested`) committed afterwards (the
//! event hub's fan-out). The child is measured on its own, so the clients' cost is not counted.

use crate::bench::BenchError;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn setup(what: &str) -> impl Fn(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::Setup(format!("{what}: {e}"))
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Current resident set of process `pid` in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The environment of the child server and of `dev-token` (same data dir, same key).
fn child_env(dir: &Path, port: u16, streams: u64) -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
        ),
        ("GANTRY_DATA_DIR", format!("{}/data", dir.display())),
        ("GANTRY_ENV", "development".to_owned()),
        ("ROCKET_ADDRESS", "127.0.0.1".to_owned()),
        ("ROCKET_PORT", port.to_string()),
        ("GANTRY_LOG", "warn".to_owned()),
        // One caller holds every stream: lift the per-user stream quota for this run only.
        ("GANTRY_QUOTA_STREAMS_PER_USER", (streams + 10).to_string()),
        ("GANTRY_RATE_LIMIT_WRITES_PER_SECOND", "0".to_owned()),
    ]
}

fn command(exe: &Path, env: &[(&'static str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.env_remove("KEYCLOAK_ISSUER")
        .env_remove("REDIS_URL")
        .env_remove("GANTRY_METRICS_PORT")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null());
    cmd
}

/// Kills the child server when the bench ends, however it ends.
struct Child(tokio::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Runs the SSE bench.
pub async fn sse(streams: u64, seconds: u64) -> Result<String, BenchError> {
    if streams == 0 || seconds == 0 {
        return Err(BenchError::Setup(
            "--streams and --seconds must be > 0".to_owned(),
        ));
    }
    let exe = std::env::current_exe().map_err(setup("own executable"))?;
    let dir = tempfile::tempdir().map_err(setup("temporary dir"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(setup("free port"))?
        .port();
    let env = child_env(dir.path(), port, streams);
    let mut server = command(&exe, &env);
    server
        .args(["--server", "--workers", "outbox-publisher"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child = Child(server.spawn().map_err(setup("start gantry --server"))?);
    let pid = child
        .0
        .id()
        .ok_or_else(|| BenchError::Setup("server exited at once".to_owned()))?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| BenchError::Setup(format!("http client: {e}")))?;
    let ready_by = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = http.get(format!("{base}/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > ready_by {
            return Err(BenchError::Setup("server not ready after 120 s".to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let token = command(&exe, &env)
        .args(["dev-token", "--sub", "bench-sse", "--admin", "--ttl", "2h"])
        .output()
        .await
        .map_err(setup("dev-token"))?;
    if !token.status.success() {
        return Err(BenchError::Setup(format!(
            "dev-token: {}",
            String::from_utf8_lossy(&token.stderr)
        )));
    }
    let bearer = format!("Bearer {}", String::from_utf8_lossy(&token.stdout).trim());
    let org: serde_json::Value = http
        .post(format!("{base}/v1/orgs"))
        .header("authorization", &bearer)
        .json(&serde_json::json!({"name": "SSE bench", "slug": "sse-bench"}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| BenchError::Setup(format!("create org: {e}")))?
        .json()
        .await
        .map_err(|e| BenchError::Setup(format!("create org: {e}")))?;
    let org_id = org["id"]
        .as_str()
        .ok_or_else(|| BenchError::Setup(format!("create org answered {org}")))?
        .to_owned();
    // Let start-up work (migrations, first publisher rounds) settle before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_mib(pid).unwrap_or(0.0);

    let opened = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let stream_url = format!("{base}/v1/orgs/{org_id}/events/stream");
    let mut tasks = Vec::with_capacity(streams as usize);
    for _ in 0..streams {
        let (http, url, bearer) = (http.clone(), stream_url.clone(), bearer.clone());
        let (opened, received) = (opened.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut response) = http.get(&url).header("authorization", bearer).send().await
            else {
                return;
            };
            if !response.status().is_success() {
                return;
            }
            opened.fetch_add(1, Ordering::Relaxed);
            let mut seen = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("workspace.requested") {
                    received.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // Heartbeats are comments; keep only the tail a split event name could span.
                if seen.len() > 4096 {
                    seen.drain(..seen.len() - 64);
                }
            }
        }));
    }
    let open_by = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) < streams && Instant::now() < open_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open = opened.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cpu_start = cpu_seconds(pid).unwrap_or(0.0);
    let idle_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let idle_cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_start;
    let idle_wall = idle_start.elapsed().as_secs_f64();
    let rss_streams = rss_mib(pid).unwrap_or(0.0);

    // One committed event must reach every open stream through the hub.
    let sent = Instant::now();
    http.post(format!("{base}/v1/orgs/{org_id}/workspaces"))
        .header("authorization", &bearer)
        .json(&serde_json::json!({"name": "fanout", "plan": "shared"}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| BenchError::Setup(format!("create workspace: {e}")))?;
    let fanout_by = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < open && Instant::now() < fanout_by {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fanout_ms = sent.elapsed().as_secs_f64() * 1000.0;
    for task in tasks {
        task.abort();
    }
    drop(child);
    Ok(format!(
        "streams={streams} open={open} idle_seconds={idle_wall:.1} \
         server_cpu_pct={:.2} rss_before_mib={rss_before:.1} rss_with_streams_mib={rss_streams:.1} \
         extra_rss_mib={:.1} event_received={}/{open} fanout_ms={fanout_ms:.0}",
        100.0 * idle_cpu / idle_wall,
        rss_streams - rss_before,
        received.load(Ordering::Relaxed),
    ))
}
