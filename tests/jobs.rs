//! Job queues through the real binary: probe jobs complete exactly once in effect while worker
//! processes are `kill -9`ed and restarted (publisher included), survive the loss of every Redis
//! key, retry with backoff, go dead with their last error, and come back on an admin retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{gantry, signal, spawn_serving};
use common::{eventually, test_redis_url, Backend, TestApp};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Where the queues live in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Embedded: SQLite holds the data and the queues.
    Sqlite,
    /// Postgres holds the data and the queues (table `job_queue`).
    Postgres,
    /// Postgres holds the data, Redis the queues.
    Redis,
}

/// The API (in process) plus the worker processes' environment.
struct Scenario {
    app: TestApp,
    admin: String,
    env: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
    redis_url: Option<String>,
    prefix: String,
}

impl Drop for Scenario {
    /// Leaves the shared Redis as it was: every key of this scenario carries its prefix.
    fn drop(&mut self) {
        let Some(url) = &self.redis_url else { return };
        let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

/// A worker process and the port its /health and /metrics answer on; killed when dropped, so
/// a failing test leaves no process behind.
struct Worker {
    child: Child,
    port: u16,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Scenario {
    async fn start(
        mode: Mode,
        test: &str,
        redis_db: u8,
        extra: &[(&'static str, &str)],
    ) -> Option<Self> {
        let redis_url = if mode == Mode::Redis {
            Some(format!("{}/{redis_db}", test_redis_url(test)?))
        } else {
            None
        };
        Self::start_on(mode, test, redis_url, extra).await
    }

    /// Like [`Scenario::start`], with the queues in the Redis at `redis_url` (Redis mode).
    async fn start_on(
        mode: Mode,
        test: &str,
        redis_url: Option<String>,
        extra: &[(&'static str, &str)],
    ) -> Option<Self> {
        let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(&'static str, String)> = vec![
            ("GANTRY_JOB_HEARTBEAT", "1s".into()),
            ("GANTRY_OUTBOX_POLL_INTERVAL", "100ms".into()),
            ("GANTRY_OUTBOX_LEASE", "3s".into()),
            ("GANTRY_RECONCILE_INTERVAL", "1s".into()),
            ("GANTRY_RECONCILE_AFTER", "4s".into()),
            ("GANTRY_SHUTDOWN_TIMEOUT", "5s".into()),
            ("GANTRY_QUEUE_PREFIX", prefix.clone()),
            ("GANTRY_EVENT_STREAM", format!("{prefix}events")),
        ];
        for (name, value) in extra {
            env.push((name, value.to_string()));
        }
        if let Some(url) = &redis_url {
            env.push(("REDIS_URL", url.clone()));
        }
        let backend = if mode == Mode::Sqlite {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let app_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let app = TestApp::spawn_with(backend, test, &app_env).await?;
        env.push(("DATABASE_URL", app.database_url.clone()));
        let admin = app.admin_token("operator");
        Some(Self {
            app,
            admin,
            env,
            dir: tempfile::tempdir().expect("tempdir"),
            redis_url,
            prefix,
        })
    }

    /// Starts a worker process; returns once its operational port accepts connections.
    async fn worker(&self) -> Worker {
        let mut cmd = gantry(self.dir.path());
        cmd.args(["--workers", "outbox-publisher"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        let (child, port) = spawn_serving(&mut cmd).await;
        Worker { child, port }
    }

    async fn probes(&self, body: Value) -> String {
        let response = self.app.post("/v1/admin/probes", &self.admin, body).await;
        response.assert_status(202);
        response.body["batch_id"]
            .as_str()
            .expect("batch_id")
            .to_owned()
    }

    async fn progress(&self, batch: &str) -> Value {
        let response = self
            .app
            .get(&format!("/v1/admin/probes/{batch}"), &self.admin)
            .await;
        response.assert_status(200);
        response.body
    }

    /// Waits until `done` holds for the batch's progress; panics with it after `timeout`.
    async fn wait_for(
        &self,
        batch: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(timeout, || async {
            let progress = self.progress(batch).await;
            if done(&progress) {
                Ok(progress)
            } else {
                Err(format!("progress: {progress}"))
            }
        })
        .await
    }
}

fn completed(progress: &Value) -> u64 {
    progress["completed"].as_u64().expect("completed")
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Waits until a worker's ops endpoint answers.
async fn wait_ready(worker: &Worker) {
    eventually(Duration::from_secs(30), || async {
        match http_get(worker.port, "/health/ready").await {
            Some((200, _)) => Ok(()),
            other => Err(format!("worker never answered /health/ready: {other:?}")),
        }
    })
    .await
}

fn stop(mut worker: Worker) {
    signal(&worker.child, false);
    let status = worker.child.wait().expect("wait");
    assert!(
        status.success(),
        "worker exited with {status} after SIGTERM"
    );
}

fn kill(mut worker: Worker) {
    signal(&worker.child, true);
    let _ = worker.child.wait();
}

async fn survives_kill_9(mode: Mode) {
    let test = "survives_kill_9";
    let Some(scenario) = Scenario::start(mode, test, 0, &[]).await else {
        return;
    };
    const TOTAL: u64 = 1_000;
    let batch = scenario
        .probes(json!({"count": TOTAL, "delay_ms": 5}))
        .await;
    let mut workers = vec![scenario.worker().await, scenario.worker().await];
    wait_ready(&workers[0]).await;
    // Worker-only processes serve the operational surface too.
    let (status, metrics) = http_get(workers[0].port, "/metrics")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("gantry_worker_busy"), "{metrics}");

    // Kill a worker (each also runs the publisher) every 600 ms while the batch runs.
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let victim = workers.remove(round % workers.len());
        kill(victim);
        workers.push(scenario.worker().await);
    }
    let progress = scenario
        .wait_for(&batch, Duration::from_secs(60), |p| completed(p) == TOTAL)
        .await;
    assert_eq!(progress["total"], TOTAL);
    assert!(progress["executions"].as_u64().expect("executions") >= TOTAL);
    assert!(progress["first_enqueued_at"].is_string());
    assert!(progress["last_completed_at"].is_string());

    // No event was routed into a second job: the SQL job table holds exactly one first attempt
    // per probe.
    if mode != Mode::Redis {
        let db = sea_orm::Database::connect(&scenario.app.database_url)
            .await
            .expect("db");
        use sea_orm::ConnectionTrait;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM job_queue",
            ))
            .await
            .expect("count")
            .expect("row");
        let jobs: i64 = row.try_get("", "n").expect("n");
        assert_eq!(jobs as u64, TOTAL, "one job per probe event");
    }
    // A publisher killed after routing a batch but before marking it published leaves it
    // leased: the next publisher re-claims it once the lease (3 s here) expires.
    eventually(Duration::from_secs(30), || async {
        let outbox = scenario.app.get("/v1/admin/outbox", &scenario.admin).await;
        if outbox.body["backlog"] == 0 {
            Ok(())
        } else {
            Err(format!("outbox never drained: {}", outbox.body))
        }
    })
    .await;

    // Finished jobs can be listed page by page, and each found by id.
    let page = scenario
        .app
        .get(
            "/v1/admin/jobs?queue=probe&state=done&limit=5",
            &scenario.admin,
        )
        .await;
    page.assert_status(200);
    let items = page.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 5, "{}", page.body);
    let cursor = page.body["next_cursor"].as_str().expect("next_cursor");
    let next = scenario
        .app
        .get(
            &format!("/v1/admin/jobs?queue=probe&state=done&limit=5&cursor={cursor}"),
            &scenario.admin,
        )
        .await;
    next.assert_status(200);
    assert_ne!(next.body["items"][0]["id"], items[0]["id"]);
    let id = items[0]["id"].as_str().expect("id");
    let job = scenario
        .app
        .get(&format!("/v1/admin/jobs/{id}"), &scenario.admin)
        .await;
    job.assert_status(200);
    assert_eq!(job.body["state"], "done");
    assert_eq!(job.body["queue"], "probe");
    // A job whose worker died after its handler finished is acknowledged only when rescued and
    // re-run, so the counts settle a little after `completed` does.
    eventually(Duration::from_secs(60), || async {
        let queues = scenario.app.get("/v1/admin/queues", &scenario.admin).await;
        queues.assert_status(200);
        let probe = &queues.body["queues"][0];
        if probe["done"] == TOTAL && probe["pending"] == 0 && probe["running"] == 0 {
            Ok(())
        } else {
            Err(format!("queue counts never settled: {}", queues.body))
        }
    })
    .await;
    // A process restarted moments ago may not handle signals yet: stop only running ones.
    for worker in workers {
        wait_ready(&worker).await;
        stop(worker);
    }
}

async fn retries_then_dead_then_admin_retry(mode: Mode) {
    let test = "retries_then_dead_then_admin_retry";
    let Some(scenario) = Scenario::start(
        mode,
        test,
        0,
        &[
            ("GANTRY_QUEUE_PROBE_MAX_ATTEMPTS", "2"),
            ("GANTRY_JOB_BACKOFF_BASE", "50ms"),
            ("GANTRY_JOB_BACKOFF_CAP", "100ms"),
        ],
    )
    .await
    else {
        return;
    };
    let worker = scenario.worker().await;
    wait_ready(&worker).await;

    // Fails once, then succeeds on the retry.
    let flaky = scenario
        .probes(json!({"count": 3, "fail_attempts": 1}))
        .await;
    scenario
        .wait_for(&flaky, Duration::from_secs(60), |p| completed(p) == 3)
        .await;
    let (_, metrics) = http_get(worker.port, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains(r#"gantry_jobs_total{outcome="retried",queue="probe"} 3"#),
        "{metrics}"
    );

    // Fails more often than allowed: dead, with the last error kept.
    let doomed = scenario
        .probes(json!({"count": 2, "fail_attempts": 3}))
        .await;
    let dead = eventually(Duration::from_secs(60), || async {
        let page = scenario
            .app
            .get("/v1/admin/jobs?queue=probe&state=dead", &scenario.admin)
            .await;
        page.assert_status(200);
        let items = page.body["items"].as_array().expect("items").clone();
        if items.len() == 2 {
            Ok(items)
        } else {
            Err(format!("dead jobs: {items:?}"))
        }
    })
    .await;
    for job in &dead {
        assert_eq!(job["state"], "dead");
        assert_eq!(job["attempt"], 2);
        assert!(job["last_error"]
            .as_str()
            .expect("last_error")
            .contains("told to fail"));
    }
    let queues = scenario.app.get("/v1/admin/queues", &scenario.admin).await;
    queues.assert_status(200);
    let probe = &queues.body["queues"][0];
    assert_eq!(probe["queue"], "probe");
    assert_eq!(probe["dead"], 2, "{}", queues.body);

    // An operator retry gives fresh attempts: attempt 3 fails, attempt 4 succeeds.
    let first = dead[0]["id"].as_str().expect("id");
    let retried = scenario
        .app
        .post(
            &format!("/v1/admin/jobs/{first}/retry"),
            &scenario.admin,
            json!({}),
        )
        .await;
    retried.assert_status(202);
    assert_eq!(retried.body["state"], "pending");
    scenario
        .wait_for(&doomed, Duration::from_secs(60), |p| completed(p) == 1)
        .await;
    // The handler's effect lands just before the backend records the job done.
    eventually(Duration::from_secs(30), || async {
        let job = scenario
            .app
            .get(&format!("/v1/admin/jobs/{first}"), &scenario.admin)
            .await;
        job.assert_status(200);
        assert_eq!(job.body["attempt"], 4, "{}", job.body);
        if job.body["state"] == "done" {
            Ok(())
        } else {
            Err(format!("never done: {}", job.body))
        }
    })
    .await;
    // Only dead jobs can be retried or deleted.
    scenario
        .app
        .post(
            &format!("/v1/admin/jobs/{first}/retry"),
            &scenario.admin,
            json!({}),
        )
        .await
        .assert_problem(409);
    scenario
        .app
        .delete(&format!("/v1/admin/jobs/{first}"), &scenario.admin)
        .await
        .assert_problem(409);
    scenario
        .app
        .get(
            &format!("/v1/admin/jobs/{}", uuid::Uuid::new_v4()),
            &scenario.admin,
        )
        .await
        .assert_problem(404);

    // Deleting the other dead job forgets it.
    let second = dead[1]["id"].as_str().expect("id");
    scenario
        .app
        .get(&format!("/v1/admin/jobs/{second}"), &scenario.admin)
        .await
        .assert_status(200);
    scenario
        .app
        .delete(&format!("/v1/admin/jobs/{second}"), &scenario.admin)
        .await
        .assert_status(204);
    scenario
        .app
        .get(&format!("/v1/admin/jobs/{second}"), &scenario.admin)
        .await
        .assert_problem(404);

    // Non-admins see none of it.
    let member = scenario.app.token("member");
    for path in [
        "/v1/admin/queues",
        "/v1/admin/jobs",
        &format!("/v1/admin/probes/{doomed}"),
    ] {
        scenario.app.get(path, &member).await.assert_problem(403);
    }
    scenario
        .app
        .post("/v1/admin/probes", &member, json!({"count": 1}))
        .await
        .assert_problem(403);
    stop(worker);
}

/// Waits until the probe queue has `n` running jobs.
async fn wait_running(scenario: &Scenario, n: u64) {
    eventually(Duration::from_secs(30), || async {
        let queues = scenario.app.get("/v1/admin/queues", &scenario.admin).await;
        if queues.body["queues"][0]["running"] == n {
            Ok(())
        } else {
            Err(format!("never {n} running: {}", queues.body))
        }
    })
    .await
}

async fn sigterm_finishes_or_releases_jobs(mode: Mode) {
    let test = "sigterm_finishes_or_releases_jobs";
    let Some(scenario) =
        Scenario::start(mode, test, 0, &[("GANTRY_SHUTDOWN_TIMEOUT", "10s")]).await
    else {
        return;
    };
    // In-flight jobs that can finish within the timeout do, before the process exits 0.
    let quick = scenario.probes(json!({"count": 4, "delay_ms": 2000})).await;
    let mut worker = scenario.worker().await;
    wait_running(&scenario, 4).await;
    signal(&worker.child, false);
    let status = worker.child.wait().expect("wait");
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert_eq!(completed(&scenario.progress(&quick).await), 4);
}

async fn sigterm_releases_unfinished_jobs(mode: Mode) {
    let test = "sigterm_releases_unfinished_jobs";
    let Some(scenario) = Scenario::start(mode, test, 0, &[("GANTRY_SHUTDOWN_TIMEOUT", "1s")]).await
    else {
        return;
    };
    // Jobs that cannot finish within the timeout are left for another process, not lost.
    let slow = scenario.probes(json!({"count": 3, "delay_ms": 4000})).await;
    let mut worker = scenario.worker().await;
    wait_running(&scenario, 3).await;
    let stopping = Instant::now();
    signal(&worker.child, false);
    let status = worker.child.wait().expect("wait");
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "did not honour the timeout"
    );
    assert_eq!(completed(&scenario.progress(&slow).await), 0);
    let successor = scenario.worker().await;
    scenario
        .wait_for(&slow, Duration::from_secs(60), |p| completed(p) == 3)
        .await;
    stop(successor);
}

/// Probe jobs of the fault scenarios: slow enough (4 at once, 10 ms each) that a fault lands
/// while most of them are still queued.
const FAULT_ENV: [(&str, &str); 3] = [
    ("GANTRY_QUEUE_PROBE_CONCURRENCY", "4"),
    // The reconciler's age rule is set far beyond the test: lost jobs must come back because
    // the loss is noticed, not because they grew old.
    ("GANTRY_RECONCILE_INTERVAL", "10m"),
    ("GANTRY_RECONCILE_AFTER", "10m"),
];
/// Probe jobs in a fault scenario.
const FAULT_TOTAL: u64 = 2_000;
/// Re-runs a fault may cause: attempts held by the worker when it struck (4 running; the probe
/// queue prefetches nothing at this concurrency) whose completion could not be recorded.
const FAULT_RERUNS: u64 = 8;

/// The probe queue's counts from the admin API.
async fn probe_queue(scenario: &Scenario) -> Value {
    let queues = scenario.app.get("/v1/admin/queues", &scenario.admin).await;
    queues.assert_status(200);
    queues.body["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queue"] == "probe")
        .expect("probe queue")
        .clone()
}

/// `gantry_reconciler_requeued_total{queue="probe"}` of a worker.
async fn requeued(worker: &Worker) -> f64 {
    let (_, text) = http_get(worker.port, "/metrics").await.expect("metrics");
    text.lines()
        .find(|line| line.starts_with("gantry_reconciler_requeued_total{queue=\"probe\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Every probe completed exactly once in effect: one row per event, and no more re-runs than
/// the fault can explain.
fn assert_each_once(progress: &Value) {
    assert_eq!(completed(progress), FAULT_TOTAL);
    let executions = progress["executions"].as_u64().expect("executions");
    assert!(
        executions <= FAULT_TOTAL + FAULT_RERUNS,
        "{executions} runs of {FAULT_TOTAL} probes: more re-runs than the fault explains"
    );
}

/// Redis loses every key while most of the work is queued; the reconciler notices (the
/// sentinel key is gone) and re-enqueues what was lost from the outbox, long before
/// `GANTRY_RECONCILE_AFTER`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flush_loses_no_work() {
    let test = "redis_flush_loses_no_work";
    // A Redis database of its own, so flushing it cannot disturb other tests.
    let Some(scenario) = Scenario::start(Mode::Redis, test, 9, &FAULT_ENV).await else {
        return;
    };
    let batch = scenario
        .probes(json!({"count": FAULT_TOTAL, "delay_ms": 10}))
        .await;
    let worker = scenario.worker().await;
    scenario
        .wait_for(&batch, Duration::from_secs(60), |p| completed(p) >= 50)
        .await;
    let before = probe_queue(&scenario).await;
    assert!(
        before["pending"].as_u64().expect("pending") > 500,
        "the flush must land while work is queued: {before}"
    );
    let client = redis::Client::open(scenario.redis_url.clone().expect("redis url")).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut conn)
        .await
        .expect("FLUSHDB");
    let progress = scenario
        .wait_for(&batch, Duration::from_secs(120), |p| {
            completed(p) == FAULT_TOTAL
        })
        .await;
    assert_each_once(&progress);
    // The queued work was lost and came back through the reconciler.
    assert!(
        requeued(&worker).await >= 500.0,
        "the reconciler re-enqueued nothing"
    );
    stop(worker);
}

/// A redis-server of the test's own on `port`, keeping nothing on disk.
fn spawn_redis(port: u16) -> Child {
    std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (install Redis to run this test)")
}

/// Redis dies (`kill -9`) mid-run and comes back empty on the same port: the worker stays up,
/// says not ready while Redis is away and ready again after, and every probe completes
/// (re-enqueued by the reconciler), none applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_without_data_resumes_all_work() {
    let test = "redis_restart_without_data_resumes_all_work";
    if test_redis_url(test).is_none() {
        return;
    }
    let port = common::process::free_port();
    let mut redis = spawn_redis(port);
    let url = format!("redis://127.0.0.1:{port}");
    let Some(scenario) = Scenario::start_on(Mode::Redis, test, Some(url), &FAULT_ENV).await else {
        let _ = redis.kill();
        let _ = redis.wait();
        return;
    };
    let batch = scenario
        .probes(json!({"count": FAULT_TOTAL, "delay_ms": 10}))
        .await;
    let mut worker = scenario.worker().await;
    scenario
        .wait_for(&batch, Duration::from_secs(60), |p| completed(p) >= 50)
        .await;
    redis.kill().expect("kill redis");
    redis.wait().expect("reap redis");
    eventually(Duration::from_secs(30), || async {
        match http_get(worker.port, "/health/ready").await {
            Some((503, _)) => Ok(()),
            other => Err(format!("ready while Redis is down: {other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        worker.child.try_wait().expect("try_wait").is_none(),
        "the worker exited while Redis was down"
    );
    let mut redis = spawn_redis(port);
    wait_ready(&worker).await;
    let progress = scenario
        .wait_for(&batch, Duration::from_secs(120), |p| {
            completed(p) == FAULT_TOTAL
        })
        .await;
    assert_each_once(&progress);
    assert!(
        requeued(&worker).await > 0.0,
        "the reconciler re-enqueued nothing"
    );
    stop(worker);
    let _ = redis.kill();
    let _ = redis.wait();
}

/// A TCP proxy on loopback whose connections can be cut (all closed, new ones refused) and
/// restored: Postgres going away and coming back, for one process only.
struct CuttableProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableProxy {
    async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let (accept_cut, accept_links) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if accept_cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_links.lock().unwrap().push(link.abort_handle());
            }
        });
        Self { port, cut, links }
    }

    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Postgres (queues and data) goes away for one worker process mid-run and comes back: the
/// worker stays up, says not ready meanwhile, reconnects by itself, and every probe completes,
/// none applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_resumes_all_work() {
    let test = "postgres_outage_resumes_all_work";
    let Some(mut scenario) = Scenario::start(Mode::Postgres, test, 0, &FAULT_ENV).await else {
        return;
    };
    // The worker reaches Postgres through the proxy; the API (in this process) directly.
    let url = scenario.app.database_url.clone();
    let (head, tail) = url.rsplit_once('/').expect("database url");
    let (host, target) = head.rsplit_once(':').expect("database url with a port");
    let proxy = CuttableProxy::start(target.parse().expect("port")).await;
    for (name, value) in scenario.env.iter_mut() {
        if *name == "DATABASE_URL" {
            *value = format!("{host}:{}/{tail}", proxy.port);
        }
    }
    let batch = scenario
        .probes(json!({"count": FAULT_TOTAL, "delay_ms": 10}))
        .await;
    let mut worker = scenario.worker().await;
    scenario
        .wait_for(&batch, Duration::from_secs(60), |p| completed(p) >= 50)
        .await;
    proxy.cut();
    eventually(Duration::from_secs(30), || async {
        match http_get(worker.port, "/health/ready").await {
            Some((503, _)) => Ok(()),
            other => Err(format!("ready while Postgres is away: {other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        worker.child.try_wait().expect("try_wait").is_none(),
        "the worker exited while Postgres was away"
    );
    proxy.restore();
    wait_ready(&worker).await;
    let progress = scenario
        .wait_for(&batch, Duration::from_secs(120), |p| {
            completed(p) == FAULT_TOTAL
        })
        .await;
    assert_each_once(&progress);
    stop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_validation() {
    let Some(app) = TestApp::spawn(Backend::Sqlite, "probe_validation").await else {
        return;
    };
    let admin = app.admin_token("operator");
    for body in [
        json!({"count": 0}),
        json!({"count": 100_001}),
        json!({"count": 1, "delay_ms": -1}),
        json!({"count": 1, "fail_attempts": 101}),
    ] {
        app.post("/v1/admin/probes", &admin, body)
            .await
            .assert_problem(422);
    }
    app.get("/v1/admin/jobs?state=lost", &admin)
        .await
        .assert_problem(400);
    app.get("/v1/admin/jobs?queue=nope", &admin)
        .await
        .assert_problem(400);
    app.get(
        &format!("/v1/admin/probes/{}", uuid::Uuid::new_v4()),
        &admin,
    )
    .await
    .assert_problem(404);
}

on_each_backend!(
    { sqlite: Mode::Sqlite, postgres: Mode::Postgres, redis: Mode::Redis } =>
    survives_kill_9,
    sigterm_finishes_or_releases_jobs,
    sigterm_releases_unfinished_jobs,
    retries_then_dead_then_admin_retry,
);

/// The worker modules' errors keep the messages and classes they had as `JobError` variants
/// of their own: a transient driver error is retried, a refusal or an exhausted codegen run
/// is permanent, and the cause is kept.
#[test]
fn worker_errors_become_job_errors_with_their_class_and_message() {
    use gantry::jobs::JobError;
    use gantry::workers::codegen::CodegenRunError;
    use gantry::workers::vcluster::driver::DriverError;

    let transient = JobError::from(DriverError::Transient("503 from the API".into()));
    assert!(transient.is_retryable());
    assert_eq!(transient.to_string(), "503 from the API");
    assert!(std::error::Error::source(&transient).is_some());
    let refused = JobError::from(DriverError::Permanent("403 forbidden".into()));
    assert!(!refused.is_retryable());
    assert_eq!(refused.to_string(), "permanent: 403 forbidden");
    let codegen = JobError::from(CodegenRunError::Exhausted {
        error_type: "git".into(),
        detail: "push refused".into(),
        attempt: 3,
    });
    assert!(!codegen.is_retryable());
    assert_eq!(
        codegen.to_string(),
        "permanent: git: push refused (attempt 3, no attempts left)"
    );
    let retryable = JobError::from(CodegenRunError::Retryable {
        error_type: "llm".into(),
        detail: "timed out".into(),
    });
    assert!(retryable.is_retryable());
    assert_eq!(retryable.to_string(), "llm: timed out");
}
