//! Tenant isolation and role rules over every authenticated route.
//!
//! - Another organization's resource, or an organization the caller is not in, is `404` (never
//!   `403`, and with the same body as for an id that exists nowhere: no existence leak).
//! - Roles: owner > admin > member > viewer. Viewers only read; members write projects and
//!   graphs; admins manage workspaces, members (not owners), webhooks and the organization's
//!   name; only owners delete the organization or touch owners. Webhooks are admin business even
//!   to read: viewers and members get `403` on every webhook route. Org secrets are write-only:
//!   admins set and delete them, members and up list their names, viewers get `403` on all of
//!   them.
//! - Teams: every role reads them and the teams of a project; admins and up create, change and
//!   delete them, put org members in them and give them roles on projects. A team's role on a
//!   project raises its members' role there for graph writes and codegen jobs only: an org
//!   viewer in a team holding `member` on project P may `PUT` P's graph and submit, cancel and
//!   delete P's codegen jobs, and nothing else.
//! - Service accounts and the audit trail are admin business even to read. A service account's
//!   key (`gtk_…`) acts in its own organization with the account's role, exactly as a user of
//!   that role, is an outsider (404) everywhere else, and is never a platform admin.
//! - Platform admins (realm role `gantry-admin`) see and may do everything.
//!
//! Every rejection is `application/problem+json`. The routes are tables of [`Call`]s, so a new
//! route added to [`org_level`] or [`child_level`] is covered by every scenario at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, TestApp, TestResponse};
use serde_json::{json, Value};
use std::fmt;
use uuid::Uuid;

macro_rules! spawn {
    ($backend:expr, $name:expr) => {
        // Loopback is allowed so the alert channels' test sends reach a closed local port
        // (nothing here ever leaves the machine).
        match TestApp::spawn_with(
            $backend,
            $name,
            &[("GANTRY_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8")],
        )
        .await
        {
            Some(app) => app,
            None => return,
        }
    };
}

/// The `If-Match` a fresh project's graph accepts.
const FRESH_ETAG: &str = "\"0\"";

/// One request of a route table.
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
    headers: Vec<(&'static str, &'static str)>,
}

impl Call {
    fn new(method: &'static str, path: impl Into<String>, body: Option<Value>) -> Call {
        Call {
            method,
            path: path.into(),
            body,
            headers: Vec::new(),
        }
    }

    fn get(path: impl Into<String>) -> Call {
        Call::new("GET", path, None)
    }

    fn delete(path: impl Into<String>) -> Call {
        Call::new("DELETE", path, None)
    }

    fn post(path: impl Into<String>, body: Value) -> Call {
        Call::new("POST", path, Some(body))
    }

    fn patch(path: impl Into<String>, body: Value) -> Call {
        Call::new("PATCH", path, Some(body))
    }

    /// `PUT …/graph` replacing version 0 (a fresh project's graph).
    fn put_graph(path: impl Into<String>, graph: Value) -> Call {
        let mut call = Call::new("PUT", path, Some(json!({ "graph": graph })));
        call.headers.push(("If-Match", FRESH_ETAG));
        call
    }

    fn with_header(mut self, name: &'static str, value: &'static str) -> Call {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name, value));
        self
    }

    fn is_read(&self) -> bool {
        self.method == "GET"
    }

    /// A webhook, alert-channel or alert-rule route: every one, reads included, needs the admin
    /// role or higher.
    fn is_webhook(&self) -> bool {
        ["/webhooks", "/alert-channels", "/alert-rules"]
            .iter()
            .any(|p| self.path.contains(p))
    }

    /// An org secret route.
    fn is_secret(&self) -> bool {
        self.path.contains("/secrets")
    }

    /// A service account route.
    fn is_service_account(&self) -> bool {
        self.path.contains("/service-accounts")
    }

    /// An audit trail route.
    fn is_audit(&self) -> bool {
        self.path.ends_with("/audit") || self.path.ends_with("/audit/export")
    }

    /// A team route, or a route of the teams of a project.
    fn is_team(&self) -> bool {
        self.path.contains("/teams")
    }

    /// A route that needs the admin role or higher even to read (webhooks, alert channels and
    /// rules, service accounts, the audit trail).
    fn is_admin_only(&self) -> bool {
        self.is_webhook() || self.is_service_account() || self.is_audit()
    }

    /// A route a member is refused by role before anything it names is looked up: the
    /// admin-only routes, and every team write.
    fn refuses_members(&self) -> bool {
        self.is_admin_only() || (self.is_team() && !self.is_read())
    }

    /// What `role` gets on this read in its own organization.
    fn read_status(&self, role: &str) -> u16 {
        let admin_refused = self.is_admin_only() && matches!(role, "viewer" | "member");
        let secret_refused = self.is_secret() && role == "viewer";
        if admin_refused || secret_refused {
            403
        } else if self.path.contains("/artifacts/") || self.path.contains("/incidents/") {
            // No poller runs here: no incident exists.
            // The fixtures' codegen jobs never run (no runner here): no file exists.
            404
        } else if ["/backup-policies/", "/backups/", "/restores/"]
            .iter()
            .any(|part| self.path.contains(part))
        {
            // No backup, policy or restore exists in the fixtures (their workspaces are on
            // the shared plan, which has no backups).
            404
        } else if self.path.ends_with("/bundle") {
            // …and so there is no bundle yet.
            409
        } else if self.path.ends_with("/kubeconfig") {
            // Members and up may have one; no workspace here is ever provisioned (409).
            if role == "viewer" {
                403
            } else {
                409
            }
        } else {
            200
        }
    }

    async fn send(&self, app: &TestApp, token: &str) -> TestResponse {
        app.request(
            self.method,
            &self.path,
            Some(token),
            self.body.clone(),
            &self.headers,
        )
        .await
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Checks `response` has `status`; an error status must come as a problem document.
#[track_caller]
fn check(response: &TestResponse, status: u16, what: &str) {
    assert_eq!(
        response.status.code, status,
        "{what}: expected {status}, got {}; body: {}",
        response.status.code, response.text
    );
    if status >= 400 {
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{what}: a rejection must be problem+json; body: {}",
            response.text
        );
        assert_eq!(
            response.body["status"], status,
            "{what}: problem status; body: {}",
            response.text
        );
        assert!(
            response.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("https://gantry.dev/problems/")),
            "{what}: problem type; body: {}",
            response.text
        );
    }
}

/// Sends `call` as `who` and checks the answer.
async fn expect(app: &TestApp, who: &str, token: &str, call: &Call, status: u16) -> TestResponse {
    let response = call.send(app, token).await;
    check(&response, status, &format!("{who}: {call}"));
    response
}

/// Sends every call as `who` and checks each is a 404 identical to `not_found` (the answer for
/// an id that exists nowhere), so a refusal says nothing about existence. Returns the count.
async fn expect_all_not_found(
    app: &TestApp,
    who: &str,
    token: &str,
    calls: &[Call],
    not_found: &Value,
) -> usize {
    for call in calls {
        let response = expect(app, who, token, call, 404).await;
        assert_eq!(
            &response.body, not_found,
            "{who}: {call}: the 404 differs from the one for an unknown id"
        );
    }
    calls.len()
}

/// The ids a route table is filled with.
#[derive(Debug, Clone)]
struct Ids {
    org: String,
    ws: String,
    project: String,
    /// `sub` of the member the member routes address.
    member: String,
    webhook: String,
    /// A delivery of `webhook` (these tests make none, so it exists nowhere).
    delivery: String,
    /// Name of an org secret.
    secret: String,
    /// A codegen job of `project` (pending: no runner in these tests).
    job: String,
    /// A health check.
    check: String,
    /// An incident (no poller runs in these tests, so it exists nowhere).
    incident: String,
    /// An alert channel.
    channel: String,
    /// An alert rule.
    rule: String,
    /// A maintenance window.
    window: String,
    /// A team, with `member` in it and a role on `project`.
    team: String,
    /// A service account (role `member`).
    account: String,
}

impl Ids {
    /// Ids that exist nowhere.
    fn random() -> Ids {
        Ids {
            org: Uuid::new_v4().to_string(),
            ws: Uuid::new_v4().to_string(),
            project: Uuid::new_v4().to_string(),
            member: format!("ghost-{}", Uuid::new_v4().simple()),
            webhook: Uuid::new_v4().to_string(),
            delivery: Uuid::new_v4().to_string(),
            secret: format!("ghost-{}", Uuid::new_v4().simple()),
            job: Uuid::new_v4().to_string(),
            check: Uuid::new_v4().to_string(),
            incident: Uuid::new_v4().to_string(),
            channel: Uuid::new_v4().to_string(),
            rule: Uuid::new_v4().to_string(),
            window: Uuid::new_v4().to_string(),
            team: Uuid::new_v4().to_string(),
            account: Uuid::new_v4().to_string(),
        }
    }

    /// `org` with the children (workspace, project, member, webhook, team, …) of `children`.
    fn mixed(org: &Ids, children: &Ids) -> Ids {
        Ids {
            org: org.org.clone(),
            ..children.clone()
        }
    }

    fn org_path(&self) -> String {
        format!("/v1/orgs/{}", self.org)
    }

    fn project_path(&self) -> String {
        format!("{}/projects/{}", self.org_path(), self.project)
    }

    fn webhook_path(&self) -> String {
        format!("{}/webhooks/{}", self.org_path(), self.webhook)
    }

    fn job_path(&self) -> String {
        format!("{}/codegen-jobs/{}", self.org_path(), self.job)
    }

    fn secret_path(&self) -> String {
        format!("{}/secrets/{}", self.org_path(), self.secret)
    }

    fn check_path(&self) -> String {
        format!("{}/health-checks/{}", self.org_path(), self.check)
    }

    fn channel_path(&self) -> String {
        format!("{}/alert-channels/{}", self.org_path(), self.channel)
    }

    fn team_path(&self) -> String {
        format!("{}/teams/{}", self.org_path(), self.team)
    }

    /// `member` in `team`.
    fn team_member_path(&self) -> String {
        format!("{}/members/{}", self.team_path(), self.member)
    }

    /// `team`'s role on `project`.
    fn project_team_path(&self) -> String {
        format!("{}/teams/{}", self.project_path(), self.team)
    }

    fn account_path(&self) -> String {
        format!("{}/service-accounts/{}", self.org_path(), self.account)
    }
}

/// A health check body: a public address literal, never contacted (no poller runs here).
fn check_body(name: &str) -> Value {
    json!({"name": name, "kind": "http", "target": "https://93.184.215.14/health",
           "conditions": ["status == 200"], "labels": {"team": "web"}})
}

/// An alert channel body: a closed loopback port, so a test send fails fast and stays local.
fn channel_body(name: &str) -> Value {
    json!({"name": name, "kind": "slack", "url": "http://127.0.0.1:9/alerts"})
}

/// A maintenance window body, far in the future (so `active` never changes during a test).
fn window_body(name: &str) -> Value {
    json!({"name": name, "starts_at": "2030-01-01T00:00:00Z", "duration": "1h",
           "labels": {"team": "web"}})
}

/// A public address literal: accepted without a DNS lookup, and nothing connects to it here.
const WEBHOOK_URL: &str = "https://93.184.215.14/hooks/x";

/// Routes addressed by the organization id alone (bodies that name a child use `ids` too).
fn org_level(ids: &Ids) -> Vec<Call> {
    let org = ids.org_path();
    vec![
        Call::get(&org),
        Call::patch(&org, json!({"name": "Taken Over"})),
        Call::delete(&org),
        Call::get(format!("{org}/members")),
        Call::post(
            format!("{org}/members"),
            json!({"user_sub": "intruder", "role": "owner"}),
        ),
        Call::post(
            format!("{org}/workspaces"),
            json!({"name": "intruder", "plan": "shared"}),
        ),
        Call::get(format!("{org}/workspaces")),
        Call::post(
            format!("{org}/projects"),
            json!({"name": "intruder", "workspace_id": ids.ws}),
        ),
        Call::get(format!("{org}/projects")),
        Call::get(format!("{org}/events")),
        Call::post(
            format!("{org}/webhooks"),
            json!({"url": WEBHOOK_URL, "events": ["*"], "description": "intruder"}),
        ),
        Call::get(format!("{org}/webhooks")),
        Call::post(
            format!("{org}/codegen-jobs"),
            json!({"project_id": ids.project}),
        ),
        Call::get(format!("{org}/codegen-jobs")),
        Call::get(format!("{org}/secrets")),
        Call::post(format!("{org}/health-checks"), check_body("intruder")),
        Call::get(format!("{org}/health-checks")),
        Call::get(format!("{org}/incidents")),
        Call::post(format!("{org}/alert-channels"), channel_body("intruder")),
        Call::get(format!("{org}/alert-channels")),
        Call::post(
            format!("{org}/alert-rules"),
            json!({"labels": {"team": "web"}, "channels": [ids.channel]}),
        ),
        Call::get(format!("{org}/alert-rules")),
        Call::post(
            format!("{org}/maintenance-windows"),
            window_body("intruder"),
        ),
        Call::get(format!("{org}/maintenance-windows")),
        Call::get(format!("{org}/status")),
        // Creates or replaces, so it is allowed with any name: no child lookup to refuse.
        Call::new(
            "PUT",
            ids.secret_path(),
            Some(json!({"value": "intruder-value", "allowed_hosts": ["github.com"]})),
        ),
        Call::post(
            format!("{org}/teams"),
            json!({"name": "intruder", "description": "intruder"}),
        ),
        Call::get(format!("{org}/teams")),
        Call::post(
            format!("{org}/service-accounts"),
            json!({"name": "intruder", "role": "owner"}),
        ),
        Call::get(format!("{org}/service-accounts")),
        Call::get(format!("{org}/audit")),
        Call::get(format!("{org}/audit/export")),
    ]
}

/// Routes that also address a member, workspace, project or webhook inside the organization.
fn child_level(ids: &Ids) -> Vec<Call> {
    let org = ids.org_path();
    let member = format!("{org}/members/{}", ids.member);
    let workspace = format!("{org}/workspaces/{}", ids.ws);
    let project = ids.project_path();
    let webhook = ids.webhook_path();
    vec![
        Call::patch(&member, json!({"role": "owner"})),
        Call::delete(&member),
        Call::get(&workspace),
        Call::delete(&workspace),
        Call::get(format!("{workspace}/kubeconfig")),
        Call::new("POST", format!("{workspace}/retry"), None),
        Call::get(&project),
        Call::patch(&project, json!({"name": "intruder"})),
        Call::delete(&project),
        Call::get(format!("{project}/graph")),
        Call::put_graph(
            format!("{project}/graph"),
            json!({"nodes": [{"id": "intruder", "kind": "service",
                              "spec": {"image": "nginx:1.27"}}], "edges": []}),
        ),
        Call::get(format!("{project}/graph/versions")),
        Call::get(format!("{project}/graph/versions/0")),
        Call::get(&webhook),
        Call::patch(
            &webhook,
            json!({"url": WEBHOOK_URL, "description": "intruder"}),
        ),
        Call::delete(&webhook),
        Call::new("POST", format!("{webhook}/rotate-secret"), None),
        Call::get(format!("{webhook}/deliveries")),
        // These tests make no deliveries: a caller allowed to redeliver gets 404 as well.
        Call::new(
            "POST",
            format!("{webhook}/deliveries/{}/redeliver", ids.delivery),
            None,
        ),
        Call::delete(ids.secret_path()),
        Call::get(ids.job_path()),
        Call::get(format!("{}/artifacts", ids.job_path())),
        Call::get(format!("{}/artifacts/kustomization.yaml", ids.job_path())),
        Call::get(format!("{}/bundle", ids.job_path())),
        Call::new("POST", format!("{}/cancel", ids.job_path()), None),
        Call::delete(ids.job_path()),
        Call::get(ids.check_path()),
        Call::patch(ids.check_path(), json!({"name": "intruder"})),
        Call::delete(ids.check_path()),
        Call::get(format!("{}/results", ids.check_path())),
        Call::get(format!("{org}/incidents/{}", ids.incident)),
        Call::new(
            "POST",
            format!("{org}/incidents/{}/acknowledge", ids.incident),
            None,
        ),
        Call::get(ids.channel_path()),
        Call::patch(ids.channel_path(), json!({"name": "intruder"})),
        Call::delete(ids.channel_path()),
        Call::new("POST", format!("{}/test", ids.channel_path()), None),
        Call::get(format!("{org}/alert-rules/{}", ids.rule)),
        Call::patch(
            format!("{org}/alert-rules/{}", ids.rule),
            json!({"send_on_resolved": false}),
        ),
        Call::delete(format!("{org}/alert-rules/{}", ids.rule)),
        Call::get(format!("{org}/maintenance-windows/{}", ids.window)),
        Call::patch(
            format!("{org}/maintenance-windows/{}", ids.window),
            json!({"name": "intruder"}),
        ),
        Call::delete(format!("{org}/maintenance-windows/{}", ids.window)),
        Call::get(format!("{workspace}/backup-policies")),
        Call::post(format!("{workspace}/backup-policies"), backup_policy_body()),
        // The workspace id doubles as an id no policy, backup or restore has.
        Call::get(format!("{workspace}/backup-policies/{}", ids.ws)),
        Call::patch(
            format!("{workspace}/backup-policies/{}", ids.ws),
            json!({"enabled": false}),
        ),
        Call::delete(format!("{workspace}/backup-policies/{}", ids.ws)),
        Call::get(format!("{workspace}/backups")),
        Call::post(format!("{workspace}/backups"), json!({})),
        Call::get(format!("{workspace}/backups/{}", ids.ws)),
        Call::delete(format!("{workspace}/backups/{}", ids.ws)),
        Call::post(format!("{workspace}/backups/{}/restore", ids.ws), json!({})),
        Call::get(format!("{workspace}/restores/{}", ids.ws)),
        Call::get(ids.team_path()),
        Call::patch(
            ids.team_path(),
            json!({"name": "intruder", "description": "intruder"}),
        ),
        Call::delete(ids.team_path()),
        // Puts `member` in the team (already there in the fixtures: no change but the answer).
        Call::new("PUT", ids.team_member_path(), None),
        Call::delete(ids.team_member_path()),
        Call::get(format!("{project}/teams")),
        Call::new(
            "PUT",
            ids.project_team_path(),
            Some(json!({"role": "admin"})),
        ),
        Call::delete(ids.project_team_path()),
        Call::get(ids.account_path()),
        Call::delete(ids.account_path()),
        Call::new("POST", format!("{}/rotate", ids.account_path()), None),
    ]
}

/// A valid backup policy.
fn backup_policy_body() -> Value {
    json!({"name": "nightly", "schedule": "0 3 * * *", "retention": {"keep_last": 7}})
}

/// Every authenticated route under `/v1/orgs/{org_id}`.
fn every_route(ids: &Ids) -> Vec<Call> {
    let mut calls = org_level(ids);
    calls.extend(child_level(ids));
    calls
}

/// Every read route.
fn reads(ids: &Ids) -> Vec<Call> {
    every_route(ids).into_iter().filter(Call::is_read).collect()
}

/// What every read route answers `token` (status and [`settled`] body), to prove nothing
/// changed.
async fn snapshot(app: &TestApp, token: &str, ids: &Ids) -> Vec<(String, u16, Value)> {
    let mut state = Vec::new();
    for call in reads(ids) {
        let response = call.send(app, token).await;
        let body = settled(&call, &response);
        state.push((call.to_string(), response.status.code, body));
    }
    state
}

/// The body of a read's answer as a snapshot keeps it: all of it, but for what changes by
/// design when nothing is done:
/// - the audit trail records every `403` (as `denied`): of `…/audit/export` (every entry, as
///   NDJSON) the snapshot keeps the entries of things done (`success`), which a refused request
///   must not add; of `…/audit` (the newest page, shifted by each denial) only the status;
/// - using a key moves its account's `last_used_at`.
fn settled(call: &Call, response: &TestResponse) -> Value {
    if response.status.code != 200 {
        return response.body.clone();
    }
    if call.path.ends_with("/audit/export") {
        let done = response
            .text
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("one JSON entry per line"))
            .filter(|entry| entry["outcome"] == "success")
            .collect();
        return Value::Array(done);
    }
    if call.is_audit() {
        return Value::Null;
    }
    let mut body = response.body.clone();
    if call.is_service_account() {
        let forget_use = |account: &mut Value| {
            if let Some(account) = account.as_object_mut() {
                account.remove("last_used_at");
            }
        };
        match body.get_mut("items").and_then(Value::as_array_mut) {
            Some(items) => items.iter_mut().for_each(forget_use),
            None => forget_use(&mut body),
        }
    }
    body
}

#[track_caller]
fn assert_unchanged(
    before: &[(String, u16, Value)],
    after: &[(String, u16, Value)],
    context: &str,
) {
    assert_eq!(before.len(), after.len());
    for (was, now) in before.iter().zip(after) {
        assert_eq!(was, now, "{}: changed by {context}", was.0);
    }
}

/// What an owner gets on a read, given as `"GET <path>"` (a snapshot's label).
fn owner_read_status(call: &str) -> u16 {
    let path = call.strip_prefix("GET ").unwrap_or(call);
    Call::get(path).read_status("owner")
}

/// The 404 body for an organization that exists nowhere.
async fn unknown_org_body(app: &TestApp, token: &str) -> Value {
    let response = app
        .get(&format!("/v1/orgs/{}", Uuid::new_v4()), token)
        .await;
    check(&response, 404, "GET /v1/orgs/{random}");
    response.body
}

/// Creates a webhook in `org` as `token`; returns its id.
async fn create_webhook(app: &TestApp, token: &str, org: &str) -> String {
    let call = Call::post(
        format!("/v1/orgs/{org}/webhooks"),
        json!({"url": WEBHOOK_URL, "events": ["*"]}),
    );
    let response = call.send(app, token).await;
    check(&response, 201, &call.to_string());
    assert!(
        response.body["secret"].is_string(),
        "{call}: no secret; body: {}",
        response.text
    );
    response.id()
}

/// Creates the org secret `name` in `org` as `token`; returns the name.
async fn create_secret(app: &TestApp, token: &str, org: &str, name: &str) -> String {
    let call = Call::new(
        "PUT",
        format!("/v1/orgs/{org}/secrets/{name}"),
        Some(json!({"value": "s3cret-value", "allowed_hosts": ["github.com"]})),
    );
    let response = call.send(app, token).await;
    check(&response, 204, &call.to_string());
    name.to_owned()
}

/// Submits a codegen job for `project` in `org` as `token`; returns its id.
async fn create_job(app: &TestApp, token: &str, org: &str, project: &str) -> String {
    let call = Call::post(
        format!("/v1/orgs/{org}/codegen-jobs"),
        json!({"project_id": project}),
    );
    let response = call.send(app, token).await;
    check(&response, 202, &call.to_string());
    response.id()
}

/// Creates a health check, an alert channel, a rule and a window in `org`; their ids.
async fn create_monitoring(app: &TestApp, token: &str, org: &str, n: usize) -> [String; 4] {
    let mut ids = Vec::new();
    let channel = {
        let call = Call::post(
            format!("/v1/orgs/{org}/alert-channels"),
            channel_body(&format!("ch-{n}")),
        );
        let response = call.send(app, token).await;
        check(&response, 201, &call.to_string());
        response.id()
    };
    for call in [
        Call::post(
            format!("/v1/orgs/{org}/health-checks"),
            check_body(&format!("check-{n}")),
        ),
        Call::post(
            format!("/v1/orgs/{org}/alert-rules"),
            json!({"labels": {"team": "web"}, "channels": [channel]}),
        ),
        Call::post(
            format!("/v1/orgs/{org}/maintenance-windows"),
            window_body(&format!("window-{n}")),
        ),
    ] {
        let response = call.send(app, token).await;
        check(&response, 201, &call.to_string());
        ids.push(response.id());
    }
    [ids[0].clone(), channel, ids[1].clone(), ids[2].clone()]
}

/// Creates the team `name` in `org` as `token` with `member` (an org member) in it, and gives
/// it `role` on `project`; returns its id.
async fn create_team(
    app: &TestApp,
    token: &str,
    org: &str,
    name: &str,
    member: &str,
    project: &str,
    role: &str,
) -> String {
    let call = Call::post(format!("/v1/orgs/{org}/teams"), json!({ "name": name }));
    let response = call.send(app, token).await;
    check(&response, 201, &call.to_string());
    let team = response.id();
    let ids = Ids {
        org: org.to_owned(),
        project: project.to_owned(),
        member: member.to_owned(),
        team: team.clone(),
        ..Ids::random()
    };
    let add = Call::new("PUT", ids.team_member_path(), None);
    let response = add.send(app, token).await;
    check(&response, 200, &add.to_string());
    assign_team(app, token, &ids, role).await;
    team
}

/// Gives `ids.team` `role` on `ids.project`, as `token`.
async fn assign_team(app: &TestApp, token: &str, ids: &Ids, role: &str) {
    let call = Call::new(
        "PUT",
        ids.project_team_path(),
        Some(json!({ "role": role })),
    );
    let response = call.send(app, token).await;
    check(&response, 200, &call.to_string());
    assert_eq!(response.body["role"], role, "{call}: {}", response.text);
}

/// A service account's key, with who it is.
#[derive(Debug, Clone)]
struct Key {
    /// The account's id.
    id: String,
    /// The `sub` it acts as (`service-account:<id>`).
    sub: String,
    /// The API key (`gtk_…`).
    key: String,
}

/// Creates the service account `name` with `role` in `org` as `token`.
async fn create_account(app: &TestApp, token: &str, org: &str, name: &str, role: &str) -> Key {
    let call = Call::post(
        format!("/v1/orgs/{org}/service-accounts"),
        json!({ "name": name, "role": role }),
    );
    let response = call.send(app, token).await;
    check(&response, 201, &call.to_string());
    let key = response.body["key"]
        .as_str()
        .filter(|key| key.starts_with("gtk_"))
        .unwrap_or_else(|| panic!("{call}: no key; body: {}", response.text))
        .to_owned();
    assert_eq!(response.body["role"], role, "{call}: {}", response.text);
    let id = response.id();
    Key {
        sub: format!("service-account:{id}"),
        id,
        key,
    }
}

/// Org of `owner` with a workspace, a project, a webhook, a secret, a codegen job, monitoring,
/// `member` as a member, a team holding `viewer` on the project with `member` in it, and a
/// service account.
async fn populated_org(app: &TestApp, owner: &str, slug: &str, member: &str) -> Ids {
    let org = app.create_org(owner, slug).await;
    let ws = app
        .create_workspace(owner, &org, &format!("{slug}-ws"))
        .await;
    let project = app
        .create_project(owner, &org, &ws, &format!("{slug}-project"))
        .await;
    let webhook = create_webhook(app, owner, &org).await;
    let secret = create_secret(app, owner, &org, &format!("{slug}-git")).await;
    let job = create_job(app, owner, &org, &project).await;
    let [check, channel, rule, window] = create_monitoring(app, owner, &org, 0).await;
    app.add_member(owner, &org, member, "member").await;
    let team = create_team(
        app,
        owner,
        &org,
        &format!("{slug}-team"),
        member,
        &project,
        "viewer",
    )
    .await;
    let account = create_account(app, owner, &org, &format!("{slug}-ci"), "member")
        .await
        .id;
    Ids {
        org,
        ws,
        project,
        member: member.to_owned(),
        webhook,
        secret,
        job,
        check,
        channel,
        rule,
        window,
        team,
        account,
        ..Ids::random()
    }
}

/// The ids of `/v1/orgs` (the caller's organizations) as `token` lists them.
async fn listed_orgs(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let response = app.get(&format!("/v1/orgs{query}"), token).await;
    check(&response, 200, &format!("GET /v1/orgs{query}"));
    response.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Requests a handler may refuse before looking the organization up (invalid bodies, missing
/// or stale `If-Match`).
fn early_refusals(ids: &Ids) -> Vec<Call> {
    let org = ids.org_path();
    let graph = format!("{}/graph", ids.project_path());
    let empty_graph = json!({"nodes": [], "edges": []});
    vec![
        Call::patch(&org, json!({"name": ""})),
        Call::patch(&org, json!({"owner": "mallory"})),
        Call::post(
            format!("{org}/members"),
            json!({"user_sub": " ", "role": "owner"}),
        ),
        Call::post(
            format!("{org}/workspaces"),
            json!({"name": "Bad_Name", "plan": "shared"}),
        ),
        Call::post(
            format!("{org}/projects"),
            json!({"name": "Bad_Name", "workspace_id": ids.ws}),
        ),
        Call::patch(ids.project_path(), json!({"name": "Bad_Name"})),
        Call::new("PUT", &graph, Some(json!({ "graph": empty_graph }))),
        Call::put_graph(&graph, empty_graph.clone()).with_header("If-Match", "\"7\""),
        Call::put_graph(&graph, json!({"nodes": {}})),
        Call::post(format!("{org}/webhooks"), json!({"url": WEBHOOK_URL})),
        Call::post(
            format!("{org}/webhooks"),
            json!({"url": WEBHOOK_URL, "events": ["*"], "secret": "whsec_mine"}),
        ),
        Call::patch(ids.webhook_path(), json!({"secret": "whsec_mine"})),
        Call::new(
            "PUT",
            ids.secret_path(),
            Some(json!({"value": "", "allowed_hosts": ["github.com"]})),
        ),
        Call::new(
            "PUT",
            ids.secret_path(),
            Some(json!({"value": "x", "extra": true, "allowed_hosts": ["github.com"]})),
        ),
        Call::post(format!("{org}/teams"), json!({"name": "Bad_Name"})),
        Call::patch(ids.team_path(), json!({"name": ""})),
        Call::new(
            "PUT",
            ids.project_team_path(),
            Some(json!({"role": "owner"})),
        ),
        Call::post(
            format!("{org}/service-accounts"),
            json!({"name": "ci", "role": "superuser"}),
        ),
        Call::post(
            format!("{org}/service-accounts"),
            json!({"name": "ci", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}),
        ),
    ]
}

/// Sends `calls` and `twins` (the same requests with other ids) pairwise as `who`: each pair must
/// be refused with the same status and body. Returns the count.
async fn expect_same_refusals(
    app: &TestApp,
    who: &str,
    token: &str,
    calls: &[Call],
    twins: &[Call],
) -> usize {
    assert_eq!(calls.len(), twins.len());
    for (call, twin) in calls.iter().zip(twins) {
        let answer = call.send(app, token).await;
        let twin_answer = twin.send(app, token).await;
        let what = format!("{who}: {call}");
        assert!(
            answer.status.code >= 400,
            "{what}: accepted; body: {}",
            answer.text
        );
        check(&answer, answer.status.code, &what);
        assert_eq!(
            (answer.status.code, &answer.body),
            (twin_answer.status.code, &twin_answer.body),
            "{who}: {call} is answered differently from {twin}"
        );
    }
    calls.len()
}

async fn cross_org_matrix(backend: Backend) {
    let app = spawn!(backend, "cross_org_matrix");
    let alice = app.token("alice");
    let mallory = app.token("mallory");
    let nobody = app.token("nobody");
    let a = populated_org(&app, &alice, "org-a", "bob").await;
    let b = populated_org(&app, &mallory, "org-b", "mike").await;
    let not_found = unknown_org_body(&app, &alice).await;

    let a_before = snapshot(&app, &alice, &a).await;
    let b_before = snapshot(&app, &mallory, &b).await;
    for (call, status, body) in a_before.iter().chain(&b_before) {
        let expected = owner_read_status(call);
        assert_eq!(*status, expected, "owner: {call}: {body}");
    }

    let mut checks = 0;
    // (a) The owner of another organization, on every route of A.
    checks += expect_all_not_found(&app, "mallory", &mallory, &every_route(&a), &not_found).await;
    // …including leaving an organization she is not in.
    let leave = Call::delete(format!("{}/members/mallory", a.org_path()));
    checks += expect_all_not_found(&app, "mallory", &mallory, &[leave], &not_found).await;

    // (b) Ids mixed across organizations: own org id, the other org's children; both ways.
    let b_with_a_children = child_level(&Ids::mixed(&b, &a));
    checks += expect_all_not_found(&app, "mallory", &mallory, &b_with_a_children, &not_found).await;
    let a_with_b_children = child_level(&Ids::mixed(&a, &b));
    checks += expect_all_not_found(&app, "alice", &alice, &a_with_b_children, &not_found).await;
    // A plain member of A (bob) too, on the routes his role may use (on the others his role
    // is refused first, with a 403 that says nothing about the ids).
    let bob = app.token("bob");
    let bobs_routes: Vec<Call> = a_with_b_children
        .iter()
        .filter(|call| {
            !call.refuses_members() && (call.is_read() || call.path.contains("/projects/"))
        })
        .cloned()
        .collect();
    checks += expect_all_not_found(&app, "bob", &bob, &bobs_routes, &not_found).await;
    // Webhook, service account and audit routes (reads included) and team writes refuse him
    // the same 403 whether what they name is A's own, B's or exists nowhere.
    let refused_routes = |ids: &Ids| -> Vec<Call> {
        every_route(ids)
            .into_iter()
            .filter(Call::refuses_members)
            .collect()
    };
    let own = refused_routes(&a);
    for call in &own {
        expect(&app, "bob", &bob, call, 403).await;
        checks += 1;
    }
    for twins in [
        refused_routes(&Ids::mixed(&a, &b)),
        refused_routes(&Ids::mixed(&a, &Ids::random())),
    ] {
        checks += expect_same_refusals(&app, "bob", &bob, &own, &twins).await;
    }

    // (c) A user in no organization.
    for ids in [&a, &b] {
        checks +=
            expect_all_not_found(&app, "nobody", &nobody, &every_route(ids), &not_found).await;
    }

    // (d) Ids that exist nowhere: a random organization for everyone, and random children in
    // the caller's own organization.
    for (who, token) in [
        ("alice", &alice),
        ("mallory", &mallory),
        ("nobody", &nobody),
    ] {
        let calls = every_route(&Ids::random());
        checks += expect_all_not_found(&app, who, token, &calls, &not_found).await;
    }
    for (who, token, own) in [("alice", &alice, &a), ("mallory", &mallory, &b)] {
        let calls = child_level(&Ids::mixed(own, &Ids::random()));
        checks += expect_all_not_found(&app, who, token, &calls, &not_found).await;
    }

    // Requests refused before the organization is looked up are answered for A exactly as for
    // an organization that exists nowhere, so they reveal nothing either.
    let random = Ids::random();
    for (who, token) in [("mallory", &mallory), ("nobody", &nobody)] {
        let (calls, twins) = (early_refusals(&a), early_refusals(&random));
        checks += expect_same_refusals(&app, who, token, &calls, &twins).await;
    }

    // A project in B naming A's workspace is refused exactly like an unknown workspace.
    let unknown_workspace = expect(
        &app,
        "mallory",
        &mallory,
        &Call::post(
            format!("{}/projects", b.org_path()),
            json!({"name": "probe", "workspace_id": Uuid::new_v4()}),
        ),
        422,
    )
    .await;
    for (who, token, org, foreign_ws) in [
        ("mallory", &mallory, &b, &a.ws),
        ("alice", &alice, &a, &b.ws),
    ] {
        let call = Call::post(
            format!("{}/projects", org.org_path()),
            json!({"name": "stolen", "workspace_id": foreign_ws}),
        );
        let refused = expect(&app, who, token, &call, 422).await;
        assert_eq!(
            refused.body["errors"][0]["pointer"], "/workspace_id",
            "{who}: {call}: {}",
            refused.text
        );
        assert_eq!(
            refused.body, unknown_workspace.body,
            "{who}: {call}: differs from the answer for an unknown workspace"
        );
        checks += 1;
    }

    // Listings only show the caller's own organizations.
    assert_eq!(listed_orgs(&app, &alice, "").await, [a.org.as_str()]);
    assert_eq!(listed_orgs(&app, &mallory, "").await, [b.org.as_str()]);
    assert!(listed_orgs(&app, &nobody, "").await.is_empty());
    let me = app.get("/v1/me", &mallory).await;
    check(&me, 200, "mallory: GET /v1/me");
    let my_orgs: Vec<_> = me.body["orgs"]
        .as_array()
        .expect("orgs")
        .iter()
        .map(|o| &o["id"])
        .collect();
    assert_eq!(my_orgs, [&json!(b.org)], "mallory: GET /v1/me: {}", me.text);
    checks += 4;

    // Nothing the refused requests named was created, changed or deleted.
    assert_unchanged(
        &a_before,
        &snapshot(&app, &alice, &a).await,
        "the refused requests",
    );
    assert_unchanged(
        &b_before,
        &snapshot(&app, &mallory, &b).await,
        "the refused requests",
    );
    eprintln!("cross_org_matrix: {checks} route×caller checks");
}

/// The four roles and the user holding each in a role-matrix organization.
const ROLES: [(&str, &str); 4] = [
    ("viewer", "vic"),
    ("member", "mia"),
    ("admin", "ada"),
    ("owner", "otto"),
];

/// Where a write rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The shared organization, with a fresh workspace, project and member targets.
    Shared,
    /// A fresh organization with one member per role (for calls that end the org or the
    /// caller's membership, and for webhook calls: the shared organization gains a webhook per
    /// fixture, soon more than a list page shows, so a refused create would go unseen there).
    FreshOrg,
}

/// Fresh resources for one call of the role matrix.
struct Fixture {
    /// `member` is a fresh viewer; `ws` and `project` are fresh (random in a fresh org);
    /// `webhook` is fresh in either scope; `secret` exists in a fresh org (random otherwise);
    /// `team` (with `member` in it, holding `viewer` on `project`) and `account` (a member) are
    /// fresh in the shared organization (random in a fresh org).
    ids: Ids,
    /// A fresh owner (besides alice and otto).
    owner_target: String,
    /// A service account with the owner role in a fresh org (random otherwise: the shared
    /// organization gains accounts faster than a list page shows them).
    owner_account: String,
    /// `sub` of the caller.
    caller: String,
    /// Unique number for names.
    n: usize,
}

/// A write route and the status each role gets: viewer, member, admin, owner.
struct WriteRule {
    scope: Scope,
    expect: [u16; 4],
    /// What a service account of each role (viewer, member, admin) gets, when that differs
    /// from a user's.
    for_keys: Option<[u16; 3]>,
    call: fn(&Fixture) -> Call,
}

fn rule(scope: Scope, expect: [u16; 4], call: fn(&Fixture) -> Call) -> WriteRule {
    WriteRule {
        scope,
        expect,
        for_keys: None,
        call,
    }
}

impl WriteRule {
    /// Service accounts get `statuses` instead of the users' (a key is no member: past the
    /// role check, its own membership exists nowhere).
    fn for_keys(self, statuses: [u16; 3]) -> WriteRule {
        WriteRule {
            for_keys: Some(statuses),
            ..self
        }
    }

    /// The status the caller of `role` gets.
    fn expected(&self, callers: Callers, role: &str) -> u16 {
        let index = ROLES
            .iter()
            .position(|(r, _)| *r == role)
            .expect("a role of ROLES");
        match (callers, self.for_keys) {
            (Callers::Keys, Some(statuses)) => statuses[index],
            _ => self.expect[index],
        }
    }
}

fn write_rules() -> Vec<WriteRule> {
    use Scope::{FreshOrg, Shared};
    vec![
        rule(Shared, [403, 403, 200, 200], |f| {
            Call::patch(
                f.ids.org_path(),
                json!({"name": format!("Renamed {}", f.n)}),
            )
        }),
        rule(FreshOrg, [403, 403, 403, 204], |f| {
            Call::delete(f.ids.org_path())
        }),
        rule(Shared, [403, 403, 201, 201], |f| {
            Call::post(
                format!("{}/members", f.ids.org_path()),
                json!({"user_sub": format!("new-member-{}", f.n), "role": "viewer"}),
            )
        }),
        rule(Shared, [403, 403, 403, 201], |f| {
            Call::post(
                format!("{}/members", f.ids.org_path()),
                json!({"user_sub": format!("new-owner-{}", f.n), "role": "owner"}),
            )
        }),
        rule(Shared, [403, 403, 200, 200], |f| {
            Call::patch(
                format!("{}/members/{}", f.ids.org_path(), f.ids.member),
                json!({"role": "member"}),
            )
        }),
        rule(Shared, [403, 403, 403, 200], |f| {
            Call::patch(
                format!("{}/members/{}", f.ids.org_path(), f.owner_target),
                json!({"role": "admin"}),
            )
        }),
        rule(Shared, [403, 403, 204, 204], |f| {
            Call::delete(format!("{}/members/{}", f.ids.org_path(), f.ids.member))
        }),
        rule(Shared, [403, 403, 403, 204], |f| {
            Call::delete(format!("{}/members/{}", f.ids.org_path(), f.owner_target))
        }),
        // Promoting oneself is changing a member like any other.
        rule(FreshOrg, [403, 403, 403, 200], |f| {
            Call::patch(
                format!("{}/members/{}", f.ids.org_path(), f.caller),
                json!({"role": "owner"}),
            )
        })
        .for_keys([403, 403, 404]),
        // Any member may leave (the one write a viewer may do).
        rule(FreshOrg, [204, 204, 204, 204], |f| {
            Call::delete(format!("{}/members/{}", f.ids.org_path(), f.caller))
        })
        .for_keys([404, 404, 404]),
        rule(Shared, [403, 403, 202, 202], |f| {
            Call::post(
                format!("{}/workspaces", f.ids.org_path()),
                json!({"name": format!("new-ws-{}", f.n), "plan": "shared"}),
            )
        }),
        rule(Shared, [403, 403, 202, 202], |f| {
            Call::delete(format!("{}/workspaces/{}", f.ids.org_path(), f.ids.ws))
        }),
        // Only a failed workspace can be retried; these never ran, so admins get 409.
        rule(Shared, [403, 403, 409, 409], |f| {
            Call::new(
                "POST",
                format!("{}/workspaces/{}/retry", f.ids.org_path(), f.ids.ws),
                None,
            )
        }),
        rule(Shared, [403, 201, 201, 201], |f| {
            Call::post(
                format!("{}/projects", f.ids.org_path()),
                json!({"name": format!("new-project-{}", f.n), "workspace_id": f.ids.ws}),
            )
        }),
        rule(Shared, [403, 200, 200, 200], |f| {
            Call::patch(
                f.ids.project_path(),
                json!({"name": format!("renamed-{}", f.n)}),
            )
        }),
        rule(Shared, [403, 204, 204, 204], |f| {
            Call::delete(f.ids.project_path())
        }),
        rule(Shared, [403, 200, 200, 200], |f| {
            Call::put_graph(
                format!("{}/graph", f.ids.project_path()),
                json!({"nodes": [{"id": "web", "kind": "service",
                                  "spec": {"image": "nginx:1.27"}}], "edges": []}),
            )
        }),
        rule(FreshOrg, [403, 403, 201, 201], |f| {
            Call::post(
                format!("{}/webhooks", f.ids.org_path()),
                json!({"url": WEBHOOK_URL, "events": ["*"], "description": format!("new-{}", f.n)}),
            )
        }),
        rule(FreshOrg, [403, 403, 200, 200], |f| {
            Call::patch(
                f.ids.webhook_path(),
                json!({"description": format!("changed-{}", f.n)}),
            )
        }),
        rule(FreshOrg, [403, 403, 200, 200], |f| {
            Call::new(
                "POST",
                format!("{}/rotate-secret", f.ids.webhook_path()),
                None,
            )
        }),
        rule(FreshOrg, [403, 403, 204, 204], |f| {
            Call::delete(f.ids.webhook_path())
        }),
        // The role is checked first; past it, the delivery exists nowhere.
        rule(FreshOrg, [403, 403, 404, 404], |f| {
            Call::new(
                "POST",
                format!(
                    "{}/deliveries/{}/redeliver",
                    f.ids.webhook_path(),
                    f.ids.delivery
                ),
                None,
            )
        }),
        // Codegen jobs: members and up submit, cancel and delete them.
        rule(Shared, [403, 202, 202, 202], |f| {
            Call::post(
                format!("{}/codegen-jobs", f.ids.org_path()),
                json!({"project_id": f.ids.project}),
            )
        }),
        rule(Shared, [403, 202, 202, 202], |f| {
            Call::new("POST", format!("{}/cancel", f.ids.job_path()), None)
        }),
        rule(Shared, [403, 204, 204, 204], |f| {
            Call::delete(f.ids.job_path())
        }),
        // Backups: admin business to write; the fixtures' workspaces are on the shared plan
        // (422 past the role check), and no policy or backup exists (404).
        rule(Shared, [403, 403, 422, 422], |f| {
            Call::post(
                format!(
                    "{}/workspaces/{}/backup-policies",
                    f.ids.org_path(),
                    f.ids.ws
                ),
                backup_policy_body(),
            )
        }),
        rule(Shared, [403, 403, 422, 422], |f| {
            Call::post(
                format!("{}/workspaces/{}/backups", f.ids.org_path(), f.ids.ws),
                json!({}),
            )
        }),
        rule(Shared, [403, 403, 404, 404], |f| {
            Call::patch(
                format!(
                    "{}/workspaces/{}/backup-policies/{}",
                    f.ids.org_path(),
                    f.ids.ws,
                    f.ids.ws
                ),
                json!({"enabled": false}),
            )
        }),
        rule(Shared, [403, 403, 404, 404], |f| {
            Call::delete(format!(
                "{}/workspaces/{}/backups/{}",
                f.ids.org_path(),
                f.ids.ws,
                f.ids.ws
            ))
        }),
        rule(Shared, [403, 403, 404, 404], |f| {
            Call::post(
                format!(
                    "{}/workspaces/{}/backups/{}/restore",
                    f.ids.org_path(),
                    f.ids.ws,
                    f.ids.ws
                ),
                json!({}),
            )
        }),
        // Secrets: admin business to write (created, replaced, deleted).
        rule(FreshOrg, [403, 403, 204, 204], |f| {
            Call::new(
                "PUT",
                format!("{}/secrets/new-secret-{}", f.ids.org_path(), f.n),
                Some(json!({"value": "new-value", "allowed_hosts": ["github.com"]})),
            )
        }),
        rule(FreshOrg, [403, 403, 204, 204], |f| {
            Call::new(
                "PUT",
                f.ids.secret_path(),
                Some(
                    json!({"value": format!("replaced-{}", f.n), "allowed_hosts": ["github.com"]}),
                ),
            )
        }),
        rule(FreshOrg, [403, 403, 204, 204], |f| {
            Call::delete(f.ids.secret_path())
        }),
        // Health checks: members and up write them.
        rule(FreshOrg, [403, 201, 201, 201], |f| {
            Call::post(
                format!("{}/health-checks", f.ids.org_path()),
                check_body(&format!("new-{}", f.n)),
            )
        }),
        rule(FreshOrg, [403, 200, 200, 200], |f| {
            Call::patch(
                f.ids.check_path(),
                json!({"name": format!("renamed-{}", f.n)}),
            )
        }),
        rule(FreshOrg, [403, 204, 204, 204], |f| {
            Call::delete(f.ids.check_path())
        }),
        // The role is checked first; past it, the incident exists nowhere.
        rule(FreshOrg, [403, 404, 404, 404], |f| {
            Call::new(
                "POST",
                format!(
                    "{}/incidents/{}/acknowledge",
                    f.ids.org_path(),
                    f.ids.incident
                ),
                None,
            )
        }),
        // Alert channels and rules: admin business.
        rule(FreshOrg, [403, 403, 201, 201], |f| {
            Call::post(
                format!("{}/alert-channels", f.ids.org_path()),
                channel_body(&format!("new-{}", f.n)),
            )
        }),
        rule(FreshOrg, [403, 403, 200, 200], |f| {
            Call::new("POST", format!("{}/test", f.ids.channel_path()), None)
        }),
        rule(FreshOrg, [403, 403, 200, 200], |f| {
            Call::patch(
                f.ids.channel_path(),
                json!({"name": format!("renamed-{}", f.n)}),
            )
        }),
        rule(FreshOrg, [403, 403, 204, 204], |f| {
            Call::delete(f.ids.channel_path())
        }),
        rule(FreshOrg, [403, 403, 201, 201], |f| {
            Call::post(
                format!("{}/alert-rules", f.ids.org_path()),
                json!({"check_id": f.ids.check, "channels": [f.ids.channel]}),
            )
        }),
        rule(FreshOrg, [403, 403, 200, 200], |f| {
            Call::patch(
                format!("{}/alert-rules/{}", f.ids.org_path(), f.ids.rule),
                json!({"send_on_resolved": false}),
            )
        }),
        rule(FreshOrg, [403, 403, 204, 204], |f| {
            Call::delete(format!("{}/alert-rules/{}", f.ids.org_path(), f.ids.rule))
        }),
        // Maintenance windows: members and up.
        rule(FreshOrg, [403, 201, 201, 201], |f| {
            Call::post(
                format!("{}/maintenance-windows", f.ids.org_path()),
                window_body(&format!("new-{}", f.n)),
            )
        }),
        rule(FreshOrg, [403, 200, 200, 200], |f| {
            Call::patch(
                format!("{}/maintenance-windows/{}", f.ids.org_path(), f.ids.window),
                json!({"name": format!("renamed-{}", f.n)}),
            )
        }),
        rule(FreshOrg, [403, 204, 204, 204], |f| {
            Call::delete(format!(
                "{}/maintenance-windows/{}",
                f.ids.org_path(),
                f.ids.window
            ))
        }),
        // Teams: admin business to write. Creates in a fresh org, where the list shows them;
        // the rest on the shared org's fresh team, which its own read shows whole.
        rule(FreshOrg, [403, 403, 201, 201], |f| {
            Call::post(
                format!("{}/teams", f.ids.org_path()),
                json!({"name": format!("new-team-{}", f.n), "description": "new"}),
            )
        }),
        rule(Shared, [403, 403, 200, 200], |f| {
            Call::patch(
                f.ids.team_path(),
                json!({"name": format!("renamed-team-{}", f.n), "description": null}),
            )
        }),
        rule(Shared, [403, 403, 204, 204], |f| {
            Call::delete(f.ids.team_path())
        }),
        rule(Shared, [403, 403, 200, 200], |f| {
            Call::new(
                "PUT",
                format!("{}/members/{}", f.ids.team_path(), f.owner_target),
                None,
            )
        }),
        // Past the role check: a team's members must be members of the organization.
        rule(Shared, [403, 403, 422, 422], |f| {
            Call::new(
                "PUT",
                format!("{}/members/stranger-{}", f.ids.team_path(), f.n),
                None,
            )
        }),
        rule(Shared, [403, 403, 204, 204], |f| {
            Call::delete(f.ids.team_member_path())
        }),
        rule(Shared, [403, 403, 200, 200], |f| {
            Call::new(
                "PUT",
                f.ids.project_team_path(),
                Some(json!({"role": "member"})),
            )
        }),
        // Past the role check: a team's role on a project is at most admin.
        rule(Shared, [403, 403, 422, 422], |f| {
            Call::new(
                "PUT",
                f.ids.project_team_path(),
                Some(json!({"role": "owner"})),
            )
        }),
        rule(Shared, [403, 403, 204, 204], |f| {
            Call::delete(f.ids.project_team_path())
        }),
        // Service accounts: admin business, with a role at most the caller's own.
        rule(FreshOrg, [403, 403, 201, 201], |f| {
            Call::post(
                format!("{}/service-accounts", f.ids.org_path()),
                json!({"name": format!("new-account-{}", f.n), "role": "admin"}),
            )
        }),
        rule(FreshOrg, [403, 403, 403, 201], |f| {
            Call::post(
                format!("{}/service-accounts", f.ids.org_path()),
                json!({"name": format!("new-owner-account-{}", f.n), "role": "owner"}),
            )
        }),
        rule(Shared, [403, 403, 200, 200], |f| {
            Call::new("POST", format!("{}/rotate", f.ids.account_path()), None)
        }),
        rule(Shared, [403, 403, 204, 204], |f| {
            Call::delete(f.ids.account_path())
        }),
        rule(FreshOrg, [403, 403, 403, 200], |f| {
            Call::new(
                "POST",
                format!(
                    "{}/service-accounts/{}/rotate",
                    f.ids.org_path(),
                    f.owner_account
                ),
                None,
            )
        }),
        rule(FreshOrg, [403, 403, 403, 204], |f| {
            Call::delete(format!(
                "{}/service-accounts/{}",
                f.ids.org_path(),
                f.owner_account
            ))
        }),
    ]
}

/// A fresh organization owned by `alice` with one member per role.
async fn org_with_roles(app: &TestApp, alice: &str, slug: &str) -> String {
    let org = app.create_org(alice, slug).await;
    for (role, sub) in ROLES {
        app.add_member(alice, &org, sub, role).await;
    }
    org
}

/// Fresh resources for call number `n` (the caller is set once it exists).
async fn fixture(app: &TestApp, alice: &str, shared_org: &str, scope: Scope, n: usize) -> Fixture {
    let mut owner_account = Uuid::new_v4().to_string();
    let ids = match scope {
        Scope::Shared => {
            let ws = app
                .create_workspace(alice, shared_org, &format!("ws-{n}"))
                .await;
            let project = app
                .create_project(alice, shared_org, &ws, &format!("project-{n}"))
                .await;
            let member = format!("target-{n}");
            app.add_member(alice, shared_org, &member, "viewer").await;
            let webhook = create_webhook(app, alice, shared_org).await;
            let job = create_job(app, alice, shared_org, &project).await;
            let [check, channel, rule, window] = create_monitoring(app, alice, shared_org, n).await;
            let team = create_team(
                app,
                alice,
                shared_org,
                &format!("team-{n}"),
                &member,
                &project,
                "viewer",
            )
            .await;
            let account = create_account(app, alice, shared_org, &format!("ci-{n}"), "member")
                .await
                .id;
            Ids {
                org: shared_org.to_owned(),
                ws,
                project,
                member,
                webhook,
                job,
                check,
                channel,
                rule,
                window,
                team,
                account,
                ..Ids::random()
            }
        }
        Scope::FreshOrg => {
            let org = org_with_roles(app, alice, &format!("fresh-{n}")).await;
            let webhook = create_webhook(app, alice, &org).await;
            let secret = create_secret(app, alice, &org, &format!("secret-{n}")).await;
            let [check, channel, rule, window] = create_monitoring(app, alice, &org, n).await;
            owner_account = create_account(app, alice, &org, &format!("root-ci-{n}"), "owner")
                .await
                .id;
            Ids {
                org,
                webhook,
                secret,
                check,
                channel,
                rule,
                window,
                ..Ids::random()
            }
        }
    };
    let owner_target = format!("owner-target-{n}");
    app.add_member(alice, &ids.org, &owner_target, "owner")
        .await;
    Fixture {
        ids,
        owner_target,
        owner_account,
        caller: String::new(),
        n,
    }
}

/// Who the role matrix sends its calls as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callers {
    /// The users of [`ROLES`], members of every role-matrix organization.
    Users,
    /// Service accounts of the roles of [`KEY_ROLES`], created by the owner in the
    /// organization of the call.
    Keys,
}

/// The roles of the service accounts the key matrix calls as.
const KEY_ROLES: [&str; 3] = ["viewer", "member", "admin"];

/// One caller of the role matrix.
#[derive(Debug, Clone)]
struct Who {
    role: &'static str,
    /// The `sub` it acts as.
    sub: String,
    /// Its bearer token (a token or an API key).
    token: String,
    /// How failures name it.
    name: String,
}

impl Callers {
    fn roles(self) -> Vec<&'static str> {
        match self {
            Callers::Users => ROLES.iter().map(|(role, _)| *role).collect(),
            Callers::Keys => KEY_ROLES.to_vec(),
        }
    }

    /// The caller of `role` in `org` (a key is created there by `alice`; `n` names it).
    async fn one(self, app: &TestApp, alice: &str, org: &str, role: &'static str, n: usize) -> Who {
        match self {
            Callers::Users => {
                let (_, sub) = ROLES
                    .into_iter()
                    .find(|(r, _)| *r == role)
                    .expect("a role of ROLES");
                Who {
                    role,
                    sub: sub.to_owned(),
                    token: app.token(sub),
                    name: format!("{sub} ({role})"),
                }
            }
            Callers::Keys => {
                let name = format!("key-{role}-{n}");
                let key = create_account(app, alice, org, &name, role).await;
                Who {
                    role,
                    sub: key.sub,
                    token: key.key,
                    name: format!("{name} ({role})"),
                }
            }
        }
    }

    /// The callers of every role in `org`.
    async fn all(self, app: &TestApp, alice: &str, org: &str, n: usize) -> Vec<Who> {
        let mut callers = Vec::new();
        for role in self.roles() {
            callers.push(self.one(app, alice, org, role, n).await);
        }
        callers
    }
}

/// The role matrix as `callers`: every read as each role, then every write rule as each role
/// on fresh resources (so no call depends on another), a refused one changing nothing. Returns
/// the count of route×role checks.
async fn role_matrix_as(app: &TestApp, callers: Callers) -> usize {
    let alice = app.token("alice");
    let shared_org = org_with_roles(app, &alice, "shared").await;
    let shared = callers.all(app, &alice, &shared_org, 0).await;
    let mut checks = 0;
    let mut n = 0;

    // Reads: every role reads every route, except the admin-only ones (webhooks, service
    // accounts, the audit trail) and, for viewers, secrets.
    let read_fixture = fixture(app, &alice, &shared_org, Scope::Shared, n).await;
    for who in &shared {
        for call in reads(&read_fixture.ids) {
            let status = call.read_status(who.role);
            expect(app, &who.name, &who.token, &call, status).await;
            checks += 1;
        }
        let me = app.get("/v1/me", &who.token).await;
        check(&me, 200, &format!("{}: GET /v1/me", who.name));
        assert_eq!(
            me.body["orgs"][0]["id"],
            shared_org.as_str(),
            "{}: {}",
            who.name,
            me.text
        );
        assert_eq!(
            me.body["orgs"][0]["role"], who.role,
            "{}: {}",
            who.name, me.text
        );
    }

    // Writes: each call on fresh resources, so no call depends on another.
    for rule in write_rules() {
        for (index, role) in callers.roles().into_iter().enumerate() {
            n += 1;
            let mut fixture = fixture(app, &alice, &shared_org, rule.scope, n).await;
            let who = match rule.scope {
                Scope::Shared => shared[index].clone(),
                Scope::FreshOrg => callers.one(app, &alice, &fixture.ids.org, role, n).await,
            };
            fixture.caller = who.sub.clone();
            let call = (rule.call)(&fixture);
            let status = rule.expected(callers, role);
            let refused = status >= 400;
            let before = if refused {
                snapshot(app, &alice, &fixture.ids).await
            } else {
                Vec::new()
            };
            expect(app, &who.name, &who.token, &call, status).await;
            if refused {
                let after = snapshot(app, &alice, &fixture.ids).await;
                assert_unchanged(&before, &after, &format!("{}: refused {call}", who.name));
            }
            checks += 1;
        }
    }
    checks
}

async fn role_matrix(backend: Backend) {
    let app = spawn!(backend, "role_matrix");
    let checks = role_matrix_as(&app, Callers::Users).await;
    eprintln!("role_matrix: {checks} route×role checks");
}

async fn platform_admin_sees_everything(backend: Backend) {
    let app = spawn!(backend, "platform_admin_sees_everything");
    let alice = app.token("alice");
    let mallory = app.token("mallory");
    let root = app.admin_token("root");
    let a = populated_org(&app, &alice, "org-a", "bob").await;
    let b = populated_org(&app, &mallory, "org-b", "mike").await;
    let not_found = unknown_org_body(&app, &root).await;

    // Every read, exactly as the owner sees it.
    let as_owner = snapshot(&app, &alice, &a).await;
    let as_admin = snapshot(&app, &root, &a).await;
    for (admin_view, owner_view) in as_admin.iter().zip(&as_owner) {
        let (call, status, body) = admin_view;
        let expected = owner_read_status(call);
        assert_eq!(*status, expected, "root: {call}: {body}");
        assert_eq!(
            admin_view, owner_view,
            "root: {call}: differs from the owner's view"
        );
    }
    let mut all = listed_orgs(&app, &root, "?all=true").await;
    all.sort();
    let mut both = vec![a.org.clone(), b.org.clone()];
    both.sort();
    assert_eq!(all, both, "root: GET /v1/orgs?all=true");
    let me = app.get("/v1/me", &root).await;
    check(&me, 200, "root: GET /v1/me");
    assert_eq!(me.body["is_platform_admin"], true, "{}", me.text);
    assert_eq!(me.body["orgs"], json!([]), "{}", me.text);

    // Seeing everything does not make ids from one organization valid in another.
    expect_all_not_found(
        &app,
        "root",
        &root,
        &child_level(&Ids::mixed(&b, &a)),
        &not_found,
    )
    .await;
    expect_all_not_found(
        &app,
        "root",
        &root,
        &every_route(&Ids::random()),
        &not_found,
    )
    .await;

    // Writes, including the owner-only ones.
    let org = a.org_path();
    let step = |call: Call, status: u16| {
        let (app, root) = (&app, &root);
        async move { expect(app, "root", root, &call, status).await }
    };
    step(Call::patch(&org, json!({"name": "Renamed By Root"})), 200).await;
    step(
        Call::post(
            format!("{org}/members"),
            json!({"user_sub": "carol", "role": "owner"}),
        ),
        201,
    )
    .await;
    step(
        Call::patch(format!("{org}/members/bob"), json!({"role": "admin"})),
        200,
    )
    .await;
    let ws = step(
        Call::post(
            format!("{org}/workspaces"),
            json!({"name": "by-root", "plan": "shared"}),
        ),
        202,
    )
    .await
    .id();
    let project_id = step(
        Call::post(
            format!("{org}/projects"),
            json!({"name": "by-root", "workspace_id": ws}),
        ),
        201,
    )
    .await
    .id();
    let project = format!("{org}/projects/{project_id}");
    let graph = step(
        Call::put_graph(
            format!("{project}/graph"),
            json!({"nodes": [{"id": "db", "kind": "database",
                              "spec": {"engine": "redis", "version": "7.4", "storage": "1Gi"}}],
                   "edges": []}),
        ),
        200,
    )
    .await;
    assert_eq!(graph.body["version"], 1, "root: PUT graph: {}", graph.text);
    // Teams: root manages them, but puts only members of the organization in them (root is
    // none).
    let team = step(
        Call::post(format!("{org}/teams"), json!({"name": "by-root"})),
        201,
    )
    .await
    .id();
    let teams = Ids {
        project: project_id.clone(),
        team,
        ..a.clone()
    };
    let added = step(Call::new("PUT", teams.team_member_path(), None), 200).await;
    assert_eq!(added.body["members"], json!([a.member]), "{}", added.text);
    step(
        Call::new("PUT", format!("{}/members/root", teams.team_path()), None),
        422,
    )
    .await;
    step(
        Call::patch(teams.team_path(), json!({"description": "by root"})),
        200,
    )
    .await;
    let assigned = step(
        Call::new(
            "PUT",
            teams.project_team_path(),
            Some(json!({"role": "admin"})),
        ),
        200,
    )
    .await;
    assert_eq!(assigned.body["team"], "by-root", "{}", assigned.text);
    let listed = step(Call::get(format!("{project}/teams")), 200).await;
    assert_eq!(listed.body["items"][0]["role"], "admin", "{}", listed.text);
    step(Call::delete(teams.project_team_path()), 204).await;
    step(Call::delete(teams.team_member_path()), 204).await;
    for team in [teams.team_path(), a.team_path()] {
        step(Call::delete(&team), 204).await;
        step(Call::get(&team), 404).await;
    }
    // Service accounts: root may create an owner's key, which is still no platform admin.
    let created = step(
        Call::post(
            format!("{org}/service-accounts"),
            json!({"name": "by-root", "role": "owner"}),
        ),
        201,
    )
    .await;
    let account = format!("{org}/service-accounts/{}", created.id());
    let key = created.body["key"].as_str().expect("a key").to_owned();
    expect(&app, "root's key", &key, &Call::get(&org), 200).await;
    expect(
        &app,
        "root's key",
        &key,
        &Call::get("/v1/admin/queues"),
        403,
    )
    .await;
    let rotated = step(Call::new("POST", format!("{account}/rotate"), None), 200).await;
    assert_ne!(rotated.body["key"], key.as_str(), "{}", rotated.text);
    expect(&app, "root's old key", &key, &Call::get(&org), 401).await;
    for account in [account, a.account_path()] {
        step(Call::delete(&account), 204).await;
        step(Call::get(&account), 404).await;
    }
    // The audit trail shows what root did.
    let trail = step(Call::get(format!("{org}/audit?actor=root&limit=200")), 200).await;
    let actions: Vec<&str> = trail.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    for action in [
        "team.create",
        "project.team.assign",
        "service_account.delete",
    ] {
        assert!(actions.contains(&action), "root: {action} in {actions:?}");
    }
    step(Call::patch(&project, json!({"name": "by-root-2"})), 200).await;
    step(Call::delete(&project), 204).await;
    step(Call::delete(format!("{org}/members/carol")), 204).await;
    for ws in [&ws, &a.ws] {
        step(Call::delete(format!("{org}/workspaces/{ws}")), 202).await;
    }
    let created = step(
        Call::post(
            format!("{org}/webhooks"),
            json!({"url": WEBHOOK_URL, "events": ["*"], "description": "by root"}),
        ),
        201,
    )
    .await;
    assert!(
        created.body["secret"].is_string(),
        "root: POST webhook: {}",
        created.text
    );
    let webhook = format!("{org}/webhooks/{}", created.id());
    step(
        Call::patch(&webhook, json!({"description": "by root 2"})),
        200,
    )
    .await;
    let rotated = step(
        Call::new("POST", format!("{webhook}/rotate-secret"), None),
        200,
    )
    .await;
    assert!(
        rotated.body["secret"].is_string(),
        "root: rotate-secret: {}",
        rotated.text
    );
    let deliveries = step(Call::get(format!("{webhook}/deliveries")), 200).await;
    assert_eq!(
        deliveries.body,
        json!({"items": [], "next_cursor": null}),
        "root: GET deliveries"
    );
    step(
        Call::new(
            "POST",
            format!("{webhook}/deliveries/{}/redeliver", Uuid::new_v4()),
            None,
        ),
        404,
    )
    .await;
    for webhook in [webhook, a.webhook_path()] {
        step(Call::delete(&webhook), 204).await;
        step(Call::get(&webhook), 404).await;
    }
    let secret = format!("{org}/secrets/by-root");
    step(
        Call::new(
            "PUT",
            &secret,
            Some(json!({"value": "root-value", "allowed_hosts": ["github.com"]})),
        ),
        204,
    )
    .await;
    let listed = step(Call::get(format!("{org}/secrets")), 200).await;
    assert!(
        !listed.text.contains("root-value"),
        "root: GET secrets: {}",
        listed.text
    );
    for secret in [secret, a.secret_path()] {
        step(Call::delete(&secret), 204).await;
        step(Call::delete(&secret), 404).await;
    }
    step(Call::delete(&org), 204).await;
    expect(&app, "alice", &alice, &Call::get(&org), 404).await;
}

/// Service accounts go through the role matrix exactly as users of their role, in their own
/// organization; everywhere else a key is an outsider (the same 404 as for an organization
/// that exists nowhere), and it is never a platform admin.
async fn service_account_matrix(backend: Backend) {
    let app = spawn!(backend, "service_account_matrix");
    let mut checks = role_matrix_as(&app, Callers::Keys).await;

    let alice = app.token("alice");
    let mallory = app.token("mallory");
    let home = populated_org(&app, &alice, "keys-home", "bob").await;
    let away = populated_org(&app, &mallory, "keys-away", "mike").await;
    let not_found = unknown_org_body(&app, &alice).await;
    let away_before = snapshot(&app, &mallory, &away).await;
    let admin_routes = admin_routes();
    assert!(!admin_routes.is_empty(), "no /v1/admin route");
    for role in KEY_ROLES {
        let key = create_account(&app, &alice, &home.org, &format!("ci-{role}"), role).await;
        let who = format!("key of keys-home ({role})");
        assert_eq!(
            unknown_org_body(&app, &key.key).await,
            not_found,
            "{who}: the 404 for an unknown org differs from a user's"
        );
        checks += expect_all_not_found(&app, &who, &key.key, &every_route(&away), &not_found).await;
        let nowhere = every_route(&Ids::random());
        checks += expect_all_not_found(&app, &who, &key.key, &nowhere, &not_found).await;
        if role == "admin" {
            // Its own organization's id with another's children, as for an admin user (lower
            // roles are refused some of these routes first, with a 403).
            let mixed = child_level(&Ids::mixed(&home, &away));
            checks += expect_all_not_found(&app, &who, &key.key, &mixed, &not_found).await;
        }
        for call in admin_routes.iter().chain([&Call::get("/v1/orgs?all=true")]) {
            expect(&app, &who, &key.key, call, 403).await;
            checks += 1;
        }
        let me = app.get("/v1/me", &key.key).await;
        check(&me, 200, &format!("{who}: GET /v1/me"));
        assert_eq!(me.body["is_platform_admin"], false, "{who}: {}", me.text);
        assert_eq!(
            me.body["orgs"].as_array().map(Vec::len),
            Some(1),
            "{who}: {}",
            me.text
        );
        assert_eq!(
            me.body["orgs"][0]["id"],
            home.org.as_str(),
            "{who}: {}",
            me.text
        );
        assert_eq!(me.body["orgs"][0]["role"], role, "{who}: {}", me.text);
        checks += 1;
    }
    assert_unchanged(
        &away_before,
        &snapshot(&app, &mallory, &away).await,
        "the keys' requests",
    );
    eprintln!("service_account_matrix: {checks} route×key checks");
}

/// Every `/v1/admin` route, with a random id in each parameter (but the stats stream, which
/// never ends for a caller it admits).
fn admin_routes() -> Vec<Call> {
    let (routes, _) = gantry::api::routes_and_spec();
    routes
        .iter()
        .filter(|route| route.uri.path().starts_with("/v1/admin/"))
        .filter(|route| !route.uri.path().ends_with("/stream"))
        .map(|route| {
            let path: Vec<String> = route
                .uri
                .path()
                .split('/')
                .map(|segment| {
                    if segment.starts_with('<') {
                        Uuid::new_v4().to_string()
                    } else {
                        segment.to_owned()
                    }
                })
                .collect();
            Call::new(route.method.as_str(), path.join("/"), None)
        })
        .collect()
}

/// What an org viewer whose team holds `member` on `p.project` gets on the writes that role
/// lets it do: `PUT` P's graph, and submit, cancel and delete P's codegen jobs. `None` for
/// every other write.
fn team_member_status(call: &Call, p: &Ids) -> Option<u16> {
    let graph = format!("{}/graph", p.project_path());
    let submit = format!("{}/codegen-jobs", p.org_path());
    let cancel = format!("{}/cancel", p.job_path());
    let for_p = call
        .body
        .as_ref()
        .is_some_and(|body| body["project_id"] == p.project.as_str());
    match call.method {
        "PUT" if call.path == graph => Some(200),
        "POST" if call.path == submit && for_p => Some(202),
        "POST" if call.path == cancel => Some(202),
        "DELETE" if call.path == p.job_path() => Some(204),
        _ => None,
    }
}

/// An org viewer in a team holding `member` on project P: the team raises its role on P for
/// P's graph and codegen jobs, and for nothing else (not P's other writes, not another
/// project Q); its reads stay a viewer's.
async fn team_member_role_on_one_project(backend: Backend) {
    let app = spawn!(backend, "team_member_role_on_one_project");
    let alice = app.token("alice");
    let vic = app.token("vic");
    let p = populated_org(&app, &alice, "teams", "bob").await;
    app.add_member(&alice, &p.org, "vic", "viewer").await;
    let join = Call::new("PUT", format!("{}/members/vic", p.team_path()), None);
    let joined = expect(&app, "alice", &alice, &join, 200).await;
    assert_eq!(
        joined.body["members"],
        json!(["bob", "vic"]),
        "{}",
        joined.text
    );
    assign_team(&app, &alice, &p, "member").await;
    let other = app
        .create_project(&alice, &p.org, &p.ws, "teams-other")
        .await;
    let other_job = create_job(&app, &alice, &p.org, &other).await;
    let q = Ids {
        project: other,
        job: other_job,
        ..p.clone()
    };
    let mut checks = 0;

    // Reads: exactly a viewer's, on P as on Q.
    for ids in [&p, &q] {
        for call in reads(ids) {
            expect(&app, "vic", &vic, &call, call.read_status("viewer")).await;
            checks += 1;
        }
    }

    // Writes: every write route of the organization, on P's ids and on Q's.
    let mut seen = std::collections::HashSet::new();
    let (mut allowed, mut refused) = (Vec::new(), Vec::new());
    for call in every_route(&p).into_iter().chain(every_route(&q)) {
        if call.is_read() || !seen.insert(format!("{call} {:?}", call.body)) {
            continue;
        }
        match team_member_status(&call, &p) {
            Some(status) => allowed.push((call, status)),
            None => refused.push(call),
        }
    }
    assert_eq!(allowed.len(), 4, "P's graph and its jobs: {allowed:?}");
    let before = [
        snapshot(&app, &alice, &p).await,
        snapshot(&app, &alice, &q).await,
    ];
    for call in &refused {
        expect(&app, "vic", &vic, call, 403).await;
        checks += 1;
    }
    let after = [
        snapshot(&app, &alice, &p).await,
        snapshot(&app, &alice, &q).await,
    ];
    for (before, after) in before.iter().zip(&after) {
        assert_unchanged(before, after, "vic's refused writes");
    }
    // In table order: submit a job for P, replace P's graph, cancel and delete P's job.
    for (call, status) in &allowed {
        expect(&app, "vic", &vic, call, *status).await;
        checks += 1;
    }
    let graph = app
        .get(&format!("{}/graph", p.project_path()), &alice)
        .await;
    check(&graph, 200, "alice: GET P's graph");
    assert_eq!(graph.body["version"], 1, "{}", graph.text);
    let job = app.get(&q.job_path(), &alice).await;
    check(&job, 200, "alice: GET Q's job");
    assert_eq!(job.body["status"], "pending", "{}", job.text);
    eprintln!("team_member_role_on_one_project: {checks} route checks");
}

/// Routes deliberately outside the tables: the SSE stream never ends for an allowed caller, so
/// it cannot be read like the others. `tests/events.rs` proves outsiders get 404 on it and that
/// a stream carries only its own organization's events.
const COVERED_ELSEWHERE: &[&str] = &[
    "GET /v1/orgs/{}/events/stream",
    "GET /v1/orgs/{}/status/stream",
];

/// The tables above cover every route under `/v1/orgs/{org_id}` the application serves (apart
/// from [`COVERED_ELSEWHERE`]), and every row is a route it serves: a new route fails here until
/// it is added to them.
#[test]
fn route_tables_cover_every_org_route() {
    let template = |method: &str, path: &str| {
        let segments: Vec<&str> = path
            .split('/')
            .map(|segment| {
                // Artifact paths (`kustomization.yaml`) fill a `<path>` segment too.
                let is_id = segment.starts_with('<')
                    || segment == "{}"
                    || segment.ends_with(".yaml")
                    || (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()));
                if is_id {
                    "{}"
                } else {
                    segment
                }
            })
            .collect();
        format!("{method} {}", segments.join("/"))
    };
    let placeholders = Ids {
        org: "{}".into(),
        ws: "{}".into(),
        project: "{}".into(),
        member: "{}".into(),
        webhook: "{}".into(),
        delivery: "{}".into(),
        secret: "{}".into(),
        job: "{}".into(),
        check: "{}".into(),
        incident: "{}".into(),
        channel: "{}".into(),
        rule: "{}".into(),
        window: "{}".into(),
        team: "{}".into(),
        account: "{}".into(),
    };
    let mut tested: Vec<String> = every_route(&placeholders)
        .iter()
        .map(|call| template(call.method, &call.path))
        .collect();
    tested.sort();
    tested.dedup();
    let (routes, _) = gantry::api::routes_and_spec();
    let mut served: Vec<String> = routes
        .iter()
        .filter(|route| route.uri.path().starts_with("/v1/orgs/<"))
        .map(|route| template(route.method.as_str(), route.uri.path()))
        .collect();
    served.retain(|route| !COVERED_ELSEWHERE.contains(&route.as_str()));
    served.sort();
    assert_eq!(tested, served, "route tables vs. the application's routes");
}

on_each_backend!(
    cross_org_matrix,
    role_matrix,
    platform_admin_sees_everything,
    service_account_matrix,
    team_member_role_on_one_project
);
