//! The request scope the audit trail is written from (the trail itself: [`super::audit`]).
//!
//! Every API request runs inside a [`RequestScope`] (task-local, set by the server's route
//! wrapper): its request id, source address, user agent, route, and — once a guard has
//! authenticated it — the actor. Jobs run inside a scope holding only the request id of the
//! request that caused them. From the scope:
//! - every outbox event records `request_id`, so one id traces request → event → job → result;
//! - a write request's audit row is inserted in the transaction of the change, just before its
//!   first outbox event (so not under the outbox lock) or else by
//!   [`crate::store::WriteTxn::commit`]; the action and target come from the route, refined by what
//!   the handler or its events noted ([`target`], [`changes`]);
//! - a write that committed without a `WriteTxn`, and every 403, is recorded by the wrapper
//!   after the handler returns.

use super::audit::{self as audit_store, NewEntry};
use crate::domain::audit::{describe, redact, Actor};
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use uuid::Uuid;

/// What a request's audit row is about, as far as the handler or its events said.
#[derive(Debug, Default)]
struct Draft {
    target: Option<(String, String)>,
    org_id: Option<Uuid>,
    before: Option<Value>,
    after: Option<Value>,
    recorded: bool,
    /// `(aggregate type, org)` of every event the work recorded.
    touched: Vec<(String, Uuid)>,
}

/// The request (or job) the current task works for.
#[derive(Debug)]
pub struct RequestScope {
    /// `X-Request-Id` as received, or generated.
    pub request_id: String,
    /// The client's address.
    pub source_ip: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The route's method and template with its parameters, for API requests.
    pub route: Option<RouteCall>,
    actor: OnceLock<Actor>,
    draft: Mutex<Draft>,
}

/// A matched route: method, template and the values of its path segments.
#[derive(Debug, Clone)]
pub struct RouteCall {
    /// `GET`, `POST`, …
    pub method: &'static str,
    /// The route's path template, e.g. `/v1/orgs/<org_id>/projects/<project_id>`.
    pub template: String,
    /// The request's path segments.
    pub segments: Vec<String>,
}

impl RouteCall {
    /// True for methods that change state.
    pub fn is_write(&self) -> bool {
        matches!(self.method, "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

impl RequestScope {
    /// The scope of an API request.
    pub fn request(
        request_id: String,
        source_ip: Option<String>,
        user_agent: Option<String>,
        route: RouteCall,
    ) -> Self {
        Self {
            request_id,
            source_ip,
            user_agent,
            route: Some(route),
            actor: OnceLock::new(),
            draft: Mutex::default(),
        }
    }

    /// The scope of a job caused by request `request_id`.
    pub fn job(request_id: String) -> Self {
        Self {
            request_id,
            source_ip: None,
            user_agent: None,
            route: None,
            actor: OnceLock::new(),
            draft: Mutex::default(),
        }
    }

    /// `(aggregate type, org)` of every event recorded in this scope so far.
    pub fn touched(&self) -> Vec<(String, Uuid)> {
        self.draft().touched.clone()
    }

    /// The authenticated actor, once a guard has set it.
    pub fn actor(&self) -> Option<&Actor> {
        self.actor.get()
    }

    fn draft(&self) -> std::sync::MutexGuard<'_, Draft> {
        self.draft.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The audit row of this request with `outcome`, if it is one to record.
    fn entry(&self, outcome: &'static str) -> Option<NewEntry> {
        let route = self.route.as_ref()?;
        let actor = self.actor.get()?;
        let described = describe(route.method, &route.template, &route.segments);
        let draft = self.draft();
        // The path's id names the target; a create's comes from the handler or its event.
        let (target_type, target_id) = match (&described.target_id, &draft.target) {
            (None, Some((kind, id))) => (kind.clone(), Some(id.clone())),
            _ => (described.target_type.clone(), described.target_id.clone()),
        };
        let changes = match (&draft.before, &draft.after) {
            (None, None) => None,
            (before, after) => Some(serde_json::json!({
                "before": before.as_ref().map(redact),
                "after": after.as_ref().map(redact),
            })),
        };
        Some(NewEntry {
            actor_type: actor.kind(),
            actor_id: actor.id(),
            action: described.action,
            target_type,
            target_id,
            org_id: described.org_id.or(draft.org_id),
            request_id: Some(self.request_id.clone()),
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            outcome,
            changes,
        })
    }
}

tokio::task_local! {
    static SCOPE: Arc<RequestScope>;
}

/// Runs `work` inside `scope`.
pub async fn scoped<F: Future>(scope: Arc<RequestScope>, work: F) -> F::Output {
    SCOPE.scope(scope, work).await
}

/// The current task's scope, if it runs for a request or a job.
pub fn current() -> Option<Arc<RequestScope>> {
    SCOPE.try_with(Arc::clone).ok()
}

/// The request id the current task works for.
pub fn request_id() -> Option<String> {
    SCOPE.try_with(|scope| scope.request_id.clone()).ok()
}

/// Records who the current request is (called by the authentication guard).
pub fn set_actor(actor: Actor) {
    let _ = SCOPE.try_with(|scope| scope.actor.set(actor));
}

/// Names the target of the current write (for creates, whose id the route does not hold).
pub fn target(kind: &str, id: impl std::fmt::Display) {
    let _ = SCOPE.try_with(|scope| scope.draft().target = Some((kind.to_owned(), id.to_string())));
}

/// Records the state before and after the current write (secrets are redacted when stored).
pub fn changes(before: Option<impl Serialize>, after: Option<impl Serialize>) {
    let before = before.and_then(|v| serde_json::to_value(v).ok());
    let after = after.and_then(|v| serde_json::to_value(v).ok());
    let _ = SCOPE.try_with(|scope| {
        let mut draft = scope.draft();
        draft.before = before;
        draft.after = after;
    });
}

/// Notes an event recorded by the current write: its aggregate is the target and its data the
/// state after, unless the handler said otherwise; the first event wins.
pub fn note_event(org_id: Uuid, aggregate_type: &str, aggregate_id: Uuid, data: &Value) {
    let _ = SCOPE.try_with(|scope| {
        let mut draft = scope.draft();
        draft.touched.push((aggregate_type.to_owned(), org_id));
        if draft.org_id.is_none() {
            draft.org_id = Some(org_id);
        }
        if draft.target.is_none() {
            draft.target = Some((aggregate_type.to_owned(), aggregate_id.to_string()));
        }
        if draft.before.is_none() && draft.after.is_none() {
            draft.after = Some(data.clone());
        }
    });
}

/// Inserts the current write request's audit row in `db` (the transaction of the change),
/// once per request; nothing outside a write request with an actor.
pub async fn record_write(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let Some(scope) = current() else {
        return Ok(());
    };
    if !scope.route.as_ref().is_some_and(RouteCall::is_write) || scope.draft().recorded {
        return Ok(());
    }
    let Some(entry) = scope.entry("success") else {
        return Ok(());
    };
    audit_store::insert(db, entry).await?;
    scope.draft().recorded = true;
    Ok(())
}

/// After the handler: records a 403 as `denied`, and a successful write that no write
/// transaction recorded (`created_id` is the new resource's id from `Location`, if any).
pub async fn record_after_response(
    db: &sea_orm::DatabaseConnection,
    scope: &RequestScope,
    status: u16,
    created_id: Option<String>,
) -> Result<(), DbErr> {
    let Some(route) = &scope.route else {
        return Ok(());
    };
    let outcome = match status {
        403 => "denied",
        200..=299 if route.is_write() && !scope.draft().recorded => "success",
        _ => return Ok(()),
    };
    if let Some(id) = created_id {
        let mut draft = scope.draft();
        if draft.target.is_none() {
            let kind = describe(route.method, &route.template, &route.segments).target_type;
            draft.target = Some((kind, id));
        }
    }
    if let Some(entry) = scope.entry(outcome) {
        let txn = super::begin_write(db).await?;
        audit_store::insert(&txn, entry).await?;
        txn.commit().await?;
    }
    Ok(())
}

/// Records the first sign-in of a user (its row was just created).
pub async fn record_sign_in(db: &impl ConnectionTrait, sub: &str) -> Result<(), DbErr> {
    let scope = current();
    audit_store::insert(
        db,
        NewEntry {
            actor_type: "user",
            actor_id: sub.to_owned(),
            action: "user.sign_in".to_owned(),
            target_type: "user".to_owned(),
            target_id: Some(sub.to_owned()),
            org_id: None,
            request_id: scope.as_ref().map(|s| s.request_id.clone()),
            source_ip: scope.as_ref().and_then(|s| s.source_ip.clone()),
            user_agent: scope.as_ref().and_then(|s| s.user_agent.clone()),
            outcome: "success",
            changes: None,
        },
    )
    .await
}
