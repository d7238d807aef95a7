//! Health checks end to end: the API in process, `gantry --workers health-poller` as the real
//! binary, and real local servers as targets and receivers — an HTTP target flipped between
//! healthy, unhealthy and slow (wiremock), a TLS server with a self-signed certificate, a TCP
//! listener, a DNS server on loopback (hickory-proto messages over UDP), an SMTP sink, and
//! webhook/Slack/PagerDuty receivers (wiremock).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{gantry, signal, ChildGuard};
use common::{eventually, Backend, TestApp};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(60);

/// Loopback is allowed for the API (create-time policy) and, unless said otherwise, the poller.
const ALLOW: (&str, &str) = ("GANTRY_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8");
const MIN_INTERVAL: (&str, &str) = ("GANTRY_HEALTH_MIN_INTERVAL", "1s");

async fn spawn(backend: Backend, test: &str) -> Option<TestApp> {
    TestApp::spawn_with(backend, test, &[ALLOW, MIN_INTERVAL]).await
}

/// Starts a health poller against the app's database; `allow_loopback = false` gives it no
/// outbound allow-list (so loopback targets are refused at connect time).
fn start_poller(app: &TestApp, dir: &std::path::Path, allow_loopback: bool) -> ChildGuard {
    start_poller_with(app, dir, allow_loopback, &[])
}

/// [`start_poller`] with extra configuration variables.
fn start_poller_with(
    app: &TestApp,
    dir: &std::path::Path,
    allow_loopback: bool,
    extra: &[(&str, &str)],
) -> ChildGuard {
    let mut cmd = gantry(dir);
    cmd.args(["--workers", "health-poller"])
        .env("DATABASE_URL", &app.database_url)
        .env("GANTRY_HEALTH_POLL_INTERVAL", "100ms")
        .env("GANTRY_NOTIFY_BACKOFF_BASE", "200ms")
        .env("GANTRY_NOTIFY_TIMEOUT", "5s")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if allow_loopback {
        cmd.env(ALLOW.0, ALLOW.1);
    }
    cmd.envs(extra.iter().copied());
    ChildGuard(cmd.spawn().expect("spawn poller"))
}

/// The HTTP target's behaviours.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Healthy,
    Unhealthy,
    Slow,
}

async fn set_mode(server: &MockServer, mode: Mode) {
    server.reset().await;
    let response = match mode {
        Mode::Healthy => ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})),
        Mode::Unhealthy => ResponseTemplate::new(503).set_body_json(json!({"status": "broken"})),
        Mode::Slow => ResponseTemplate::new(200)
            .set_body_json(json!({"status": "ok"}))
            .set_delay(Duration::from_millis(1500)),
    };
    Mock::given(any())
        .respond_with(response)
        .mount(server)
        .await;
}

async fn target(mode: Mode) -> MockServer {
    let server = MockServer::start().await;
    set_mode(&server, mode).await;
    server
}

/// A receiver answering 200 to every POST, recording them.
async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

async fn received(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

struct Org {
    token: String,
    id: String,
}

impl Org {
    async fn new(app: &TestApp, slug: &str) -> Org {
        let token = app.token(&format!("{slug}-owner"));
        let id = app.create_org(&token, slug).await;
        Org { token, id }
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/orgs/{}/{rest}", self.id)
    }

    async fn create_check(&self, app: &TestApp, body: Value) -> String {
        let response = app
            .post(&self.path("health-checks"), &self.token, body)
            .await;
        response.assert_status(201);
        response.id()
    }

    async fn check(&self, app: &TestApp, id: &str) -> Value {
        let response = app
            .get(&self.path(&format!("health-checks/{id}")), &self.token)
            .await;
        response.assert_status(200);
        response.body
    }

    async fn wait_status(&self, app: &TestApp, id: &str, status: &str) -> Value {
        eventually(WAIT, || async {
            let check = self.check(app, id).await;
            if check["status"] == status {
                Ok(check)
            } else {
                Err(format!("never {status}: {check}"))
            }
        })
        .await
    }

    async fn results(&self, app: &TestApp, id: &str) -> Vec<Value> {
        let response = app
            .get(
                &self.path(&format!("health-checks/{id}/results?limit=200")),
                &self.token,
            )
            .await;
        response.assert_status(200);
        response.body["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn incidents(&self, app: &TestApp, query: &str) -> Vec<Value> {
        let response = app
            .get(&self.path(&format!("incidents{query}")), &self.token)
            .await;
        response.assert_status(200);
        response.body["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn event_types(&self, app: &TestApp) -> Vec<String> {
        let response = app
            .get(
                &self.path("events?type=health.*,incident.*&limit=200"),
                &self.token,
            )
            .await;
        response.assert_status(200);
        response.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn webhook_channel(&self, app: &TestApp, url: &str) -> String {
        let response = app
            .post(
                &self.path("alert-channels"),
                &self.token,
                json!({"name": "hook", "kind": "webhook", "url": url}),
            )
            .await;
        response.assert_status(201);
        assert!(response.body["secret"].is_string(), "{}", response.text);
        response.id()
    }

    async fn rule(&self, app: &TestApp, body: Value) -> String {
        let response = app.post(&self.path("alert-rules"), &self.token, body).await;
        response.assert_status(201);
        response.id()
    }
}

fn http_check(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "kind": "http",
        "target": url,
        "interval": "1s",
        "timeout": "1s",
        "failure_threshold": 2,
        "success_threshold": 2,
        "conditions": ["status == 200", "$.status == \"ok\"", "response_time < 1s"],
        "labels": {"team": "web"},
    })
}

/// Hysteresis, degraded/down, incidents, events, one notification per transition, send on
/// resolved, acknowledgement — against a target flipped between healthy, unhealthy and slow.
async fn http_check_lifecycle(backend: Backend) {
    let Some(app) = spawn(backend, "http_check_lifecycle").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let server = target(Mode::Healthy).await;
    let hooks = receiver().await;
    let channel = org
        .webhook_channel(&app, &format!("{}/alerts", hooks.uri()))
        .await;
    let id = org
        .create_check(&app, http_check("api", &format!("{}/health", server.uri())))
        .await;
    org.rule(
        &app,
        json!({"check_id": id, "channels": [channel], "group_wait": "0s"}),
    )
    .await;
    assert_eq!(org.check(&app, &id).await["status"], "unknown");
    let _poller = start_poller(&app, dir.path(), true);

    let up = org.wait_status(&app, &id, "up").await;
    assert_eq!(up["interval"], "1s");
    // Up only after two successes in a row.
    let results = org.results(&app, &id).await;
    assert!(results.len() >= 2, "{results:?}");
    assert!(results.iter().all(|r| r["success"] == true), "{results:?}");

    set_mode(&server, Mode::Unhealthy).await;
    org.wait_status(&app, &id, "degraded").await;
    let results = org.results(&app, &id).await;
    let failed: Vec<_> = results.iter().filter(|r| r["success"] == false).collect();
    assert!(failed.len() >= 2, "degraded after one failure: {results:?}");
    let conditions = &failed[0]["conditions"];
    assert_eq!(conditions[0]["expr"], "status == 200");
    assert_eq!(conditions[0]["success"], false);
    assert_eq!(conditions[0]["actual"], "503");
    assert_eq!(conditions[1]["actual"], "broken");

    let open = org.incidents(&app, "?status=open").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["cause"], "degraded");
    let incident = open[0]["id"].as_str().unwrap().to_owned();
    let incident_path = org.path(&format!("incidents/{incident}"));

    // One notification for the opening, recorded on the incident.
    eventually(WAIT, || async {
        let got = app.get(&incident_path, &org.token).await.body;
        match got["notifications"].as_array() {
            Some(n) if n.len() == 1 && n[0]["status"] == "sent" => Ok(()),
            _ => Err(format!("not sent: {got}")),
        }
    })
    .await;
    let sent = received(&hooks).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["incidents"][0]["incident_id"], incident.as_str());
    assert_eq!(sent[0]["incidents"][0]["transition"], "opened");

    // Acknowledged once; a second acknowledgement is a conflict.
    let ack = format!("{incident_path}/acknowledge");
    let acked = app.post(&ack, &org.token, json!(null)).await;
    acked.assert_status(200);
    assert_eq!(acked.body["acknowledged_by"], "acme-owner");
    app.post(&ack, &org.token, json!(null))
        .await
        .assert_problem(409);

    // A slow answer fails `response_time < 1s` (the timeout is 1s too: down).
    set_mode(&server, Mode::Slow).await;
    org.wait_status(&app, &id, "down").await;
    set_mode(&server, Mode::Healthy).await;
    org.wait_status(&app, &id, "up").await;
    let resolved = app.get(&incident_path, &org.token).await.body;
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert!(resolved["acknowledged_at"].is_string());
    // The resolution is notified (send_on_resolved defaults to true), once.
    eventually(WAIT, || async {
        let sent = received(&hooks).await;
        if sent.len() == 2 {
            Ok(sent)
        } else {
            Err(format!("{sent:?}"))
        }
    })
    .await;
    let sent = received(&hooks).await;
    assert_eq!(sent[1]["incidents"][0]["transition"], "resolved");

    let types = org.event_types(&app).await;
    for expected in [
        "health.up",
        "health.degraded",
        "incident.opened",
        "incident.acknowledged",
        "health.down",
        "incident.resolved",
    ] {
        assert!(types.iter().any(|t| t == expected), "{expected}: {types:?}");
    }
    assert_eq!(
        types.iter().filter(|t| *t == "incident.opened").count(),
        1,
        "{types:?}"
    );

    // Paused checks say so; the status overview has uptime and latency.
    app.patch(
        &org.path(&format!("health-checks/{id}")),
        &org.token,
        json!({"enabled": false}),
    )
    .await
    .assert_status(200);
    assert_eq!(org.check(&app, &id).await["status"], "paused");
    let status = app.get(&org.path("status"), &org.token).await;
    status.assert_status(200);
    let overview = &status.body["checks"][0];
    assert_eq!(overview["status"], "paused");
    let day = overview["uptime"]["24h"].as_f64().unwrap();
    assert!(day > 0.0 && day < 100.0, "{overview}");
    assert!(overview["latency_ms"]["p50"].is_number(), "{overview}");
    assert_eq!(status.body["open_incidents"], json!([]));
}

/// A TLS server with a self-signed certificate for `localhost`: answers any request with 200.
async fn tls_server() -> SocketAddr {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], private)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A DNS server on loopback: `app.test.` has A 10.1.2.3; every other name is NXDOMAIN.
async fn dns_server() -> SocketAddr {
    use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
    use hickory_resolver::proto::rr::{rdata::A, RData, Record};
    use hickory_resolver::proto::serialize::binary::{BinDecodable, BinEncodable};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(request) = Message::from_bytes(&buf[..n]) else {
                continue;
            };
            let mut response = Message::new();
            response
                .set_id(request.id())
                .set_message_type(MessageType::Response)
                .set_op_code(request.op_code())
                .set_recursion_desired(request.recursion_desired())
                .set_recursion_available(true)
                .set_authoritative(true);
            response.add_queries(request.queries().to_vec());
            match request.queries().first() {
                Some(q) if q.name().to_ascii() == "app.test." => {
                    response.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A::new(10, 1, 2, 3)),
                    ));
                }
                _ => {
                    response.set_response_code(ResponseCode::NXDomain);
                }
            }
            if let Ok(bytes) = response.to_bytes() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

/// TCP, DNS and TLS checks, and an HTTP check of a server with a bad certificate.
async fn tcp_dns_tls_checks(backend: Backend) {
    let Some(app) = spawn(backend, "tcp_dns_tls_checks").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = listener.local_addr().unwrap();
    let dns = dns_server().await;
    let tls = tls_server().await;
    let base =
        json!({"interval": "1s", "timeout": "1s", "failure_threshold": 1, "success_threshold": 1});
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let tcp = org
        .create_check(
            &app,
            with(
                json!({"name": "tcp", "kind": "tcp", "target": tcp_addr.to_string(),
                        "conditions": ["connected", "response_time < 1s"]}),
            ),
        )
        .await;
    let dns_ok = org
        .create_check(
            &app,
            with(json!({"name": "dns", "kind": "dns",
                        "target": {"name": "app.test", "record_type": "A", "resolver": dns.to_string()},
                        "conditions": ["rcode == NOERROR", "answer contains \"10.1.2.3\""]})),
        )
        .await;
    let dns_missing = org
        .create_check(
            &app,
            with(json!({"name": "dns-missing", "kind": "dns",
                        "target": {"name": "gone.test", "record_type": "A", "resolver": dns.to_string()},
                        "conditions": ["rcode == NOERROR"]})),
        )
        .await;
    let tls_check = org
        .create_check(
            &app,
            with(
                json!({"name": "tls", "kind": "tls", "target": format!("localhost:{}", tls.port()),
                        "conditions": ["certificate_expiry > 14d", "hostname_valid"]}),
            ),
        )
        .await;
    let bad_cert = org
        .create_check(
            &app,
            with(json!({"name": "https", "kind": "http",
                        "target": format!("https://localhost:{}/", tls.port()),
                        "conditions": ["status == 200"]})),
        )
        .await;
    let _poller = start_poller(&app, dir.path(), true);

    org.wait_status(&app, &tcp, "up").await;
    org.wait_status(&app, &dns_ok, "up").await;
    let missing = org.wait_status(&app, &dns_missing, "degraded").await;
    assert_eq!(missing["kind"], "dns");
    let results = org.results(&app, &dns_missing).await;
    assert_eq!(
        results[0]["conditions"][0]["actual"], "NXDOMAIN",
        "{results:?}"
    );
    // The self-signed certificate: the handshake works, the name does not verify.
    org.wait_status(&app, &tls_check, "degraded").await;
    let results = org.results(&app, &tls_check).await;
    let conditions = &results[0]["conditions"];
    assert_eq!(conditions[0]["success"], true, "{conditions}");
    assert_eq!(conditions[1]["success"], false, "{conditions}");
    assert_eq!(conditions[1]["actual"], "false", "{conditions}");
    let failed = org.wait_status(&app, &bad_cert, "down").await;
    assert_eq!(failed["status"], "down");
    let results = org.results(&app, &bad_cert).await;
    assert!(
        results[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{results:?}"
    );

    // The listener goes away: down.
    drop(listener);
    org.wait_status(&app, &tcp, "down").await;
}

/// Targets outside the outbound policy are refused at create time (422 with a pointer), and a
/// poller without the allow-list refuses them at connect time; conditions that do not parse
/// are 422 with a pointer to them.
async fn refusals(backend: Backend) {
    let Some(strict) = TestApp::spawn_with(backend, "refusals", &[MIN_INTERVAL]).await else {
        return;
    };
    let org = Org::new(&strict, "acme").await;
    for (body, pointer) in [
        (
            json!({"name": "x", "kind": "http", "target": "http://127.0.0.1:9/"}),
            "/target",
        ),
        (
            json!({"name": "x", "kind": "http", "target": "http://169.254.169.254/latest"}),
            "/target",
        ),
        (
            json!({"name": "x", "kind": "tcp", "target": "10.0.0.1:5432"}),
            "/target",
        ),
        (
            json!({"name": "x", "kind": "dns",
                   "target": {"name": "a.example", "record_type": "A", "resolver": "127.0.0.1:53"}}),
            "/target/resolver",
        ),
        (
            json!({"name": "x", "kind": "http", "target": "https://93.184.215.14/",
                   "conditions": ["status == 200", "status ==="]}),
            "/conditions/1",
        ),
        (
            json!({"name": "x", "kind": "tcp", "target": "93.184.215.14:443",
                   "conditions": ["status == 200"]}),
            "/conditions/0",
        ),
        (
            json!({"name": "x", "kind": "http", "target": "https://93.184.215.14/", "interval": "5h"}),
            "/interval",
        ),
        (
            json!({"name": "x", "kind": "http", "target": "https://93.184.215.14/",
                   "interval": "10s", "timeout": "20s"}),
            "/timeout",
        ),
        (
            json!({"name": "x", "kind": "http", "target": "https://93.184.215.14/", "failure_threshold": 21}),
            "/failure_threshold",
        ),
        (
            json!({"name": "x", "kind": "smtp", "target": "93.184.215.14:25"}),
            "/kind",
        ),
    ] {
        let response = strict
            .post(&org.path("health-checks"), &org.token, body.clone())
            .await;
        response.assert_problem(422);
        let pointers: Vec<&str> = response.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(pointers.contains(&pointer), "{body}: {}", response.text);
    }
    for body in [
        json!({"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/"}),
        json!({"name": "slack", "kind": "slack", "url": "http://10.1.1.1/"}),
        json!({"name": "mail", "kind": "email", "to": ["ops@example.com"]}),
        json!({"name": "pd", "kind": "pagerduty"}),
    ] {
        strict
            .post(&org.path("alert-channels"), &org.token, body)
            .await
            .assert_problem(422);
    }
    drop(strict);

    // Allowed by the API, refused by a poller that has no allow-list (the connect-time check).
    let Some(app) = spawn(backend, "refusals_at_connect").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let server = target(Mode::Healthy).await;
    let id = org
        .create_check(&app, http_check("internal", &server.uri()))
        .await;
    let _poller = start_poller(&app, dir.path(), false);
    org.wait_status(&app, &id, "down").await;
    let results = org.results(&app, &id).await;
    assert!(
        results[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a public address")),
        "{results:?}"
    );
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "the refused target was contacted"
    );
}

/// Two pollers share the checks: each check runs once per interval across both; after one
/// is killed with SIGKILL, the other carries on with every check.
async fn two_pollers_and_kill(backend: Backend) {
    let Some(app) = spawn(backend, "two_pollers_and_kill").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let server = target(Mode::Healthy).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let mut body = http_check(&format!("c{n}"), &format!("{}/c{n}", server.uri()));
        body["interval"] = json!("2s");
        ids.push(org.create_check(&app, body).await);
    }
    let first = start_poller(&app, dir.path(), true);
    let _second = start_poller(&app, dir.path(), true);
    for id in &ids {
        eventually(WAIT, || async {
            let n = org.results(&app, id).await.len();
            if n >= 4 {
                Ok(())
            } else {
                Err(format!("{id}: {n} results"))
            }
        })
        .await;
    }
    // No run twice in one interval: consecutive runs of a check are an interval apart (less
    // only when a late first run catches up with the check's phase; a double is ~0s apart).
    for id in &ids {
        let times: Vec<chrono::DateTime<chrono::Utc>> = org
            .results(&app, id)
            .await
            .iter()
            .map(|r| r["at"].as_str().unwrap().parse().unwrap())
            .collect();
        for pair in times.windows(2) {
            let gap = (pair[1] - pair[0]).num_milliseconds();
            assert!(gap >= 1000, "{id}: runs {gap}ms apart: {times:?}");
        }
    }
    signal(&first.0, true);
    let counts: Vec<usize> = {
        let mut counts = Vec::new();
        for id in &ids {
            counts.push(org.results(&app, id).await.len());
        }
        counts
    };
    for (id, before) in ids.iter().zip(counts) {
        eventually(WAIT, || async {
            let n = org.results(&app, id).await.len();
            if n >= before + 3 {
                Ok(())
            } else {
                Err(format!("{id}: {n} results, {before} before the kill"))
            }
        })
        .await;
    }
}

/// During a maintenance window a failing check is `maintenance` and notifies nobody; when the
/// window ends, the still-open incident notifies once.
async fn maintenance_suppresses(backend: Backend) {
    let Some(app) = spawn(backend, "maintenance_suppresses").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let server = target(Mode::Unhealthy).await;
    let hooks = receiver().await;
    let channel = org.webhook_channel(&app, &hooks.uri()).await;
    let id = org
        .create_check(&app, http_check("api", &server.uri()))
        .await;
    org.rule(
        &app,
        json!({"labels": {"team": "web"}, "channels": [channel], "group_wait": "0s"}),
    )
    .await;
    let window = app
        .post(
            &org.path("maintenance-windows"),
            &org.token,
            json!({"name": "deploy", "starts_at": chrono::Utc::now().to_rfc3339(),
                   "duration": "6s", "check_ids": [id]}),
        )
        .await;
    window.assert_status(201);
    assert_eq!(window.body["active"], true);
    let _poller = start_poller(&app, dir.path(), true);
    org.wait_status(&app, &id, "maintenance").await;
    // The incident opens (results are still recorded), but nothing is sent.
    eventually(WAIT, || async {
        let open = org.incidents(&app, "?status=open").await;
        if open.len() == 1 {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    assert!(received(&hooks).await.is_empty());
    org.wait_status(&app, &id, "degraded").await;
    eventually(WAIT, || async {
        let sent = received(&hooks).await;
        if sent.len() == 1 {
            Ok(())
        } else {
            Err(format!("{sent:?}"))
        }
    })
    .await;
    // More runs of the still-failing check send nothing more.
    let runs = org.results(&app, &id).await.len();
    eventually(WAIT, || async {
        let n = org.results(&app, &id).await.len();
        if n >= runs + 3 {
            Ok(())
        } else {
            Err(format!("{n} runs"))
        }
    })
    .await;
    assert_eq!(received(&hooks).await.len(), 1);
}

/// Incidents opened within a rule's group wait go out as one notification; with
/// `send_on_resolved: false` the recovery is not notified.
async fn group_wait_and_no_resolved(backend: Backend) {
    let Some(app) = spawn(backend, "group_wait_and_no_resolved").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let server = target(Mode::Unhealthy).await;
    let hooks = receiver().await;
    let channel = org.webhook_channel(&app, &hooks.uri()).await;
    org.rule(
        &app,
        json!({"labels": {"team": "web"}, "channels": [channel], "group_wait": "4s",
               "send_on_resolved": false}),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            org.create_check(
                &app,
                http_check(&format!("c{n}"), &format!("{}/c{n}", server.uri())),
            )
            .await,
        );
    }
    let _poller = start_poller(&app, dir.path(), true);
    let sent = eventually(WAIT, || async {
        let sent = received(&hooks).await;
        if sent.is_empty() {
            Err("nothing sent".to_owned())
        } else {
            Ok(sent)
        }
    })
    .await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["incidents"].as_array().unwrap().len(),
        3,
        "{sent:?}"
    );
    set_mode(&server, Mode::Healthy).await;
    for id in &ids {
        org.wait_status(&app, id, "up").await;
    }
    let runs = org.results(&app, &ids[0]).await.len();
    eventually(WAIT, || async {
        let n = org.results(&app, &ids[0]).await.len();
        if n >= runs + 3 {
            Ok(())
        } else {
            Err(format!("{n} runs"))
        }
    })
    .await;
    assert_eq!(received(&hooks).await.len(), 1, "the recovery was notified");
}

/// A tiny SMTP sink on loopback: accepts every message and keeps its DATA.
async fn smtp_sink() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let kept = messages.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            kept.lock().unwrap().push(data.take().unwrap_or_default());
                            let _ = write.write_all(b"250 OK\r\n").await;
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 OK\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (addr, messages)
}

/// `POST …/alert-channels/{id}/test` reaches each kind: email through SMTP, Slack's JSON, and
/// PagerDuty's Events API v2 payload.
async fn channel_tests(backend: Backend) {
    let (smtp, mails) = smtp_sink().await;
    let smtp_url = format!("smtp://{smtp}");
    let Some(app) = TestApp::spawn_with(
        backend,
        "channel_tests",
        &[
            ALLOW,
            ("GANTRY_SMTP_URL", &smtp_url),
            ("GANTRY_SMTP_FROM", "alerts@gantry.test"),
        ],
    )
    .await
    else {
        return;
    };
    let org = Org::new(&app, "acme").await;
    let hooks = receiver().await;
    let pd = MockServer::start().await;
    Mock::given(path("/v2/enqueue"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&pd)
        .await;
    for (body, check) in [
        (
            json!({"name": "mail", "kind": "email", "to": ["ops@example.com"]}),
            "email",
        ),
        (
            json!({"name": "slack", "kind": "slack", "url": format!("{}/slack", hooks.uri())}),
            "slack",
        ),
        (
            json!({"name": "pd", "kind": "pagerduty", "routing_key": "R0UT1NG",
                   "url": format!("{}/v2/enqueue", pd.uri())}),
            "pagerduty",
        ),
    ] {
        let created = app
            .post(&org.path("alert-channels"), &org.token, body)
            .await;
        created.assert_status(201);
        let tested = app
            .post(
                &org.path(&format!("alert-channels/{}/test", created.id())),
                &org.token,
                json!(null),
            )
            .await;
        tested.assert_status(200);
        assert_eq!(tested.body["success"], true, "{check}: {}", tested.text);
    }
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("ops@example.com"), "{mails:?}");
    let slack = received(&hooks).await;
    assert!(slack[0]["text"].is_string(), "{slack:?}");
    let events = received(&pd).await;
    assert_eq!(events[0]["routing_key"], "R0UT1NG");
    assert_eq!(events[0]["event_action"], "trigger");
    assert!(events[0]["dedup_key"].is_string());
}

/// The status stream (kept out of the isolation tables because it never ends) answers an
/// outsider 404 like every org route, and a viewer an event stream.
async fn status_stream_is_org_scoped(backend: Backend) {
    let Some(app) = spawn(backend, "status_stream_is_org_scoped").await else {
        return;
    };
    let org = Org::new(&app, "acme").await;
    let outsider = app.token("mallory");
    let path = org.path("status/stream");
    app.get(&path, &outsider).await.assert_problem(404);
    app.add_member(&org.token, &org.id, "vic", "viewer").await;
    let response = app
        .client
        .get(path)
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {}", app.token("vic")),
        ))
        .dispatch()
        .await;
    assert_eq!(response.status().code, 200);
    assert_eq!(
        response.content_type().map(|c| c.to_string()),
        Some("text/event-stream".to_owned())
    );
}

/// An incident nobody acknowledges is notified again every `repeat_interval` (`repeat-1`,
/// `repeat-2`, … on the incident and at the receiver); once acknowledged, the repeats stop.
async fn repeat_until_acknowledged(backend: Backend) {
    let Some(app) = spawn(backend, "repeat_until_acknowledged").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let server = target(Mode::Unhealthy).await;
    let hooks = receiver().await;
    let channel = org.webhook_channel(&app, &hooks.uri()).await;
    let id = org
        .create_check(&app, http_check("api", &server.uri()))
        .await;
    org.rule(
        &app,
        json!({"check_id": id, "channels": [channel], "group_wait": "0s",
               "repeat_interval": "2s"}),
    )
    .await;
    let _poller = start_poller(&app, dir.path(), true);
    org.wait_status(&app, &id, "degraded").await;
    let incident = eventually(WAIT, || async {
        let open = org.incidents(&app, "?status=open").await;
        match open.as_slice() {
            [one] => Ok(one["id"].as_str().unwrap().to_owned()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let incident_path = org.path(&format!("incidents/{incident}"));
    let transitions = || async {
        let got = app.get(&incident_path, &org.token).await.body;
        got["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["transition"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    eventually(WAIT, || async {
        let seen = transitions().await;
        if seen.iter().any(|t| t == "repeat-2") {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let mut seen = transitions().await;
    seen.sort();
    assert_eq!(&seen[..3], ["opened", "repeat-1", "repeat-2"], "{seen:?}");
    // The receiver got the repeats too, each naming the transition.
    eventually(WAIT, || async {
        let sent: Vec<String> = received(&hooks)
            .await
            .iter()
            .flat_map(|m| m["incidents"].as_array().cloned().unwrap_or_default())
            .filter_map(|i| i["transition"].as_str().map(str::to_owned))
            .collect();
        if sent.iter().any(|t| t == "repeat-2") {
            Ok(())
        } else {
            Err(format!("{sent:?}"))
        }
    })
    .await;

    app.post(
        &format!("{incident_path}/acknowledge"),
        &org.token,
        json!(null),
    )
    .await
    .assert_status(200);
    let at_ack = transitions().await.len();
    // Three repeat intervals of a still-failing check later: no new notification. (At most
    // one repeat can have been recorded by a run already under way at the acknowledgement.)
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = transitions().await;
    assert!(after.len() <= at_ack + 1, "{after:?} after {at_ack}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        transitions().await.len(),
        after.len(),
        "repeats after the acknowledgement"
    );
}

/// A recurring window (`* * * * *`, 30 s long) is in effect for the first half of every
/// minute: the window says so, and a failing check it covers shows `maintenance` then and its
/// own status otherwise, turn after turn.
async fn recurring_window(backend: Backend) {
    let Some(app) = spawn(backend, "recurring_window").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let server = target(Mode::Unhealthy).await;
    let id = org
        .create_check(&app, http_check("api", &server.uri()))
        .await;
    let created = app
        .post(
            &org.path("maintenance-windows"),
            &org.token,
            json!({"name": "every minute", "recurrence": "* * * * *", "duration": "30s",
                   "starts_at": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
                   "check_ids": [id]}),
        )
        .await;
    created.assert_status(201);
    assert_eq!(created.body["recurrence"], "* * * * *");
    let active_now = || async {
        let windows = app.get(&org.path("maintenance-windows"), &org.token).await;
        windows.assert_status(200);
        windows.body["items"][0]["active"].as_bool().unwrap()
    };
    let _poller = start_poller(&app, dir.path(), true);
    for wanted in [true, false, true] {
        eventually(Duration::from_secs(75), || async {
            let second = chrono::Timelike::second(&chrono::Utc::now());
            let active = active_now().await;
            // Away from the edges, the window is active exactly in the first half-minute.
            if (2..28).contains(&second) || (32..58).contains(&second) {
                assert_eq!(active, second < 30, "at second {second}");
            }
            if active == wanted {
                Ok(())
            } else {
                Err(format!("active={active}"))
            }
        })
        .await;
        let status = if wanted { "maintenance" } else { "degraded" };
        org.wait_status(&app, &id, status).await;
    }
}

/// Raw results past `GANTRY_HEALTH_RESULT_RETENTION` become hourly rollups: the results list
/// loses them, while the uptime still counts them (failures included).
async fn retention_rolls_results_up(backend: Backend) {
    let Some(app) = spawn(backend, "retention_rolls_results_up").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let org = Org::new(&app, "acme").await;
    let server = target(Mode::Unhealthy).await;
    let id = org
        .create_check(&app, http_check("api", &server.uri()))
        .await;
    let uptime = || async {
        let status = app.get(&org.path("status"), &org.token).await;
        status.assert_status(200);
        status.body["checks"][0]["uptime"]["24h"].as_f64().unwrap()
    };
    {
        let _poller = start_poller(&app, dir.path(), true);
        org.wait_status(&app, &id, "degraded").await;
        set_mode(&server, Mode::Healthy).await;
        org.wait_status(&app, &id, "up").await;
    }
    let raw = org.results(&app, &id).await.len();
    let before = uptime().await;
    assert!(
        before > 0.0 && before < 100.0,
        "uptime {before} with {raw} results"
    );

    // A poller keeping raw results for one second rolls up the rest at its first round.
    let _poller = start_poller_with(
        &app,
        dir.path(),
        true,
        &[("GANTRY_HEALTH_RESULT_RETENTION", "1s")],
    );
    eventually(WAIT, || async {
        let results = org.results(&app, &id).await;
        // The failing runs are the oldest: none of them is left as a raw result.
        let failing = results.iter().filter(|r| r["success"] == false).count();
        if failing == 0 && results.len() < raw {
            Ok(())
        } else {
            Err(format!("{} results, {failing} failing", results.len()))
        }
    })
    .await;
    let after = uptime().await;
    assert!(after < 100.0, "the rolled-up failures still count: {after}");
}

/// Alert channels, alert rules and maintenance windows are read one by one and changed with
/// PATCH: the result is validated as a whole (422 with a pointer), and unknown ids are 404.
async fn alerting_resources_are_patched(backend: Backend) {
    let Some(app) = spawn(backend, "alerting_resources_are_patched").await else {
        return;
    };
    let org = Org::new(&app, "patches").await;
    let check = org
        .create_check(&app, http_check("web", "http://127.0.0.1:9/health"))
        .await;
    let hook = org.webhook_channel(&app, "http://127.0.0.1:9/a").await;
    let channel_path = org.path(&format!("alert-channels/{hook}"));
    let renamed = app
        .patch(
            &channel_path,
            &org.token,
            json!({"name": "pager", "url": "http://127.0.0.1:9/b"}),
        )
        .await;
    renamed.assert_status(200);
    assert_eq!(renamed.body["name"], "pager");
    assert_eq!(renamed.body["url"], "http://127.0.0.1:9/b");
    assert_eq!(renamed.body["kind"], "webhook");
    assert!(renamed.body.get("secret").is_none(), "{}", renamed.text);
    let refused = app
        .patch(&channel_path, &org.token, json!({"name": " "}))
        .await;
    refused.assert_problem(422);
    assert_eq!(refused.body["errors"][0]["pointer"], "/name");
    app.patch(&channel_path, &org.token, json!({"kind": "slack"}))
        .await
        .assert_problem(422);

    // A rule: read it, move it from labels to one check, change its timings.
    let rule = org
        .rule(&app, json!({"labels": {"team": "web"}, "channels": [hook]}))
        .await;
    let rule_path = org.path(&format!("alert-rules/{rule}"));
    let read = app.get(&rule_path, &org.token).await;
    read.assert_status(200);
    assert_eq!(read.body["labels"], json!({"team": "web"}));
    let moved = app
        .patch(
            &rule_path,
            &org.token,
            json!({"check_id": check, "repeat_interval": "1h", "send_on_resolved": false}),
        )
        .await;
    moved.assert_status(200);
    assert_eq!(moved.body["check_id"], check.as_str());
    assert_eq!(moved.body["labels"], Value::Null);
    assert_eq!(moved.body["repeat_interval"], "3600s");
    assert_eq!(moved.body["group_wait"], "30s");
    assert_eq!(moved.body["send_on_resolved"], false);
    assert_eq!(moved.body["channels"], json!([hook]));
    let bad = app
        .patch(
            &rule_path,
            &org.token,
            json!({"channels": [uuid::Uuid::new_v4()]}),
        )
        .await;
    bad.assert_problem(422);
    assert_eq!(bad.body["errors"][0]["pointer"], "/channels/0");
    app.get(
        &org.path(&format!("alert-rules/{}", uuid::Uuid::new_v4())),
        &org.token,
    )
    .await
    .assert_problem(404);

    // A window: read it, shorten it, make it recurring, then one-off again.
    let created = app
        .post(
            &org.path("maintenance-windows"),
            &org.token,
            json!({"name": "deploy", "starts_at": "2030-01-01T00:00:00Z", "duration": "2h",
                   "labels": {"team": "web"}}),
        )
        .await;
    created.assert_status(201);
    let window_path = org.path(&format!("maintenance-windows/{}", created.id()));
    let read = app.get(&window_path, &org.token).await;
    read.assert_status(200);
    assert_eq!(read.body["duration"], "7200s");
    let recurring = app
        .patch(
            &window_path,
            &org.token,
            json!({"duration": "30m", "recurrence": "0 3 * * SUN", "check_ids": [check]}),
        )
        .await;
    recurring.assert_status(200);
    assert_eq!(recurring.body["duration"], "1800s");
    assert_eq!(recurring.body["recurrence"], "0 3 * * SUN");
    assert_eq!(recurring.body["check_ids"], json!([check]));
    assert_eq!(recurring.body["labels"], Value::Null);
    assert_eq!(recurring.body["name"], "deploy");
    let one_off = app
        .patch(
            &window_path,
            &org.token,
            json!({"recurrence": null, "ends_at": "2030-01-01T01:00:00Z"}),
        )
        .await;
    one_off.assert_status(200);
    assert_eq!(one_off.body["recurrence"], Value::Null);
    assert_eq!(one_off.body["ends_at"], "2030-01-01T01:00:00Z");
    assert_eq!(one_off.body["duration"], "3600s");
    let backwards = app
        .patch(
            &window_path,
            &org.token,
            json!({"ends_at": "2029-01-01T00:00:00Z"}),
        )
        .await;
    backwards.assert_problem(422);
    assert_eq!(backwards.body["errors"][0]["pointer"], "/ends_at");
    // Viewers read windows but do not change them.
    let viewer = app.token("patches-viewer");
    app.add_member(&org.token, &org.id, "patches-viewer", "viewer")
        .await;
    app.get(&window_path, &viewer).await.assert_status(200);
    app.patch(&window_path, &viewer, json!({"name": "mine"}))
        .await
        .assert_problem(403);
}

on_each_backend!(
    alerting_resources_are_patched,
    retention_rolls_results_up,
    recurring_window,
    repeat_until_acknowledged,
    status_stream_is_org_scoped,
    http_check_lifecycle,
    tcp_dns_tls_checks,
    refusals,
    two_pollers_and_kill,
    maintenance_suppresses,
    group_wait_and_no_resolved,
    channel_tests
);
