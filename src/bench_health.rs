//! `gantry bench health --checks N --interval D [--seconds S]`: N HTTP checks against a local
//! target (a keep-alive HTTP/1.1 responder on loopback, in this process), one poller (the real
//! [`crate::workers::health::Poller`] in the periodic loop) on `DATABASE_URL` or a temporary
//! SQLite file; prints checks/s, schedule delay p50/p99 (run start − its due time), and the
//! process's CPU share and peak RSS (which include the target and, on SQLite, the database).

use crate::bench::BenchError;
use crate::config::Config;
use crate::jobs::Queues;
use crate::metrics::Metrics;
use crate::store::{self, health_checks::NewCheck};
use crate::workers::{health, periodic, WorkerContext};
use sea_orm::{EntityTrait, QuerySelect};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every request on every connection with `200 {"status":"ok"}`.
async fn local_target() -> Result<std::net::SocketAddr, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Setup(format!("target: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Setup(format!("target: {e}")))?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size in MiB, from `/proc/self/status`.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs the health bench.
pub async fn health(
    base: &Config,
    checks: u64,
    interval: Duration,
    seconds: u64,
) -> Result<String, BenchError> {
    if interval < Duration::from_secs(1) || checks == 0 {
        return Err(BenchError::Setup(
            "--checks must be > 0 and --interval at least 1s".to_owned(),
        ));
    }
    let mut config = base.clone();
    let _dir = if config.database_url == crate::config::DEFAULT_DATABASE_URL {
        let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(e.to_string()))?;
        config.database_url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
        Some(dir)
    } else {
        None
    };
    config.outbound_allow.push(
        "127.0.0.0/8"
            .parse()
            .map_err(|_| BenchError::Setup("loopback CIDR".to_owned()))?,
    );
    let db = crate::app::open_database(&config)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let queues = Queues::connect(&config, &db).await?;
    let metrics = Arc::new(Metrics::new().map_err(|e| BenchError::Setup(e.to_string()))?);
    let target = local_target().await?;
    let org = store::orgs::insert(
        &db,
        "bench",
        &format!("bench-{}", uuid::Uuid::new_v4().simple()),
    )
    .await?;
    let interval_ms = interval.as_millis() as i32;
    let start = store::now() + chrono::Duration::seconds(2);
    for n in 0..checks {
        let id = store::new_id();
        let check = NewCheck {
            name: format!("bench-{n}"),
            kind: "http",
            target: format!("http://{target}/c{n}"),
            spec: serde_json::json!({"method": "GET", "headers": {}, "body": null}),
            conditions: vec!["status == 200".to_owned(), "$.status == \"ok\"".to_owned()],
            labels: serde_json::json!({}),
            interval_ms,
            timeout_ms: 5000.min(interval_ms),
            failure_threshold: 3,
            success_threshold: 2,
            enabled: true,
        };
        let first = health::first_due(id, interval_ms, start);
        store::health_checks::insert(&db, org.id, id, check, first).await?;
    }
    let ctx = WorkerContext {
        db: db.clone(),
        redis: None,
        config: Arc::new(config),
        metrics,
        queues,
        secrets: Arc::new(
            crate::sealed::SecretsCipher::ephemeral()
                .map_err(|e| BenchError::Setup(e.to_string()))?,
        ),
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let cpu_before = cpu_seconds().unwrap_or(0.0);
    let started = Instant::now();
    let poller = tokio::spawn(periodic::run(
        ctx.clone(),
        health::Poller::new(ctx.clone()),
        shutdown,
    ));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let _ = stop.send(true);
    let _ = poller.await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().unwrap_or(0.0) - cpu_before;
    // Schedule delay: each run's start minus the due time on its check's phase.
    use crate::store::health_checks::{entity, result_entity};
    let firsts: std::collections::HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>> =
        entity::Entity::find()
            .all(&db)
            .await?
            .into_iter()
            .map(|c| (c.id, health::first_due(c.id, interval_ms, start)))
            .collect();
    let results: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> = result_entity::Entity::find()
        .select_only()
        .column(result_entity::Column::CheckId)
        .column(result_entity::Column::At)
        .into_tuple()
        .all(&db)
        .await?;
    let step = i64::from(interval_ms);
    let mut delays: Vec<f64> = results
        .iter()
        .filter_map(|(check, at)| {
            let first = firsts.get(check)?;
            let since = (*at - *first).num_milliseconds();
            let due = since.div_euclid(step) * step;
            Some((since - due) as f64 / 1000.0)
        })
        .collect();
    delays.sort_by(|a, b| a.total_cmp(b));
    Ok(format!(
        "health: {checks} checks every {}s, {} runs in {elapsed:.1}s = {:.1} checks/s; schedule delay p50 {:.3}s p99 {:.3}s; CPU {:.1}% of one core; peak RSS {:.0} MiB (process incl. target{})",
        interval.as_secs(),
        results.len(),
        results.len() as f64 / elapsed,
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        cpu / elapsed * 100.0,
        peak_rss_mib().unwrap_or(0.0),
        if ctx.config.database_url.starts_with("sqlite:") { " and SQLite" } else { "" },
    ))
}
