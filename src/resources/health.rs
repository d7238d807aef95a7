//! Health checks, their results and incidents as the API answers them and their events carry
//! them, plus the parsing of a check definition (every problem at once, with JSON pointers).

use crate::domain::health::{parse_condition, parse_duration, CheckKind};
use crate::error::{ApiError, FieldError};
use crate::store::health_checks::{CheckResult, HealthCheck, NewCheck};
use crate::store::incidents::{Incident, Notification};
use crate::webhooks::outbound::OutboundPolicy;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// Largest interval (the smallest is `GANTRY_HEALTH_MIN_INTERVAL`, 10s by default).
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Default interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most conditions per check.
pub const MAX_CONDITIONS: usize = 32;

/// A duration as seconds (`60`) or text (`"60s"`, `"500ms"`, `"1h"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DurationInput {
    /// Whole seconds.
    Seconds(u64),
    /// `500ms`, `30s`, `4h`, `14d`.
    Text(String),
}

impl DurationInput {
    /// The duration, if well-formed.
    pub fn parse(&self) -> Option<Duration> {
        match self {
            DurationInput::Seconds(s) => Some(Duration::from_secs(*s)),
            DurationInput::Text(t) => parse_duration(t),
        }
    }
}

/// Formats a duration as the API answers it: `60s`, `500ms`.
pub fn format_ms(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The check kinds a definition may name.
pub const CHECK_KINDS: [&str; 4] = ["http", "tcp", "dns", "tls"];

/// The schema of a check kind: one of [`CHECK_KINDS`].
fn check_kind_schema(_gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    crate::domain::schema::string_enum(&CHECK_KINDS)
}

/// A check definition as sent (create, or a PATCH merged onto the current one).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    /// Display name (1–200 characters).
    pub name: String,
    /// `http`, `tcp`, `dns` or `tls`.
    #[schemars(schema_with = "check_kind_schema")]
    pub kind: String,
    /// `http`: a URL; `tcp`/`tls`: `host:port`; `dns`: `{name, record_type, resolver?}`.
    #[schemars(with = "serde_json::Value")]
    pub target: serde_json::Value,
    /// `10s`–`1h` (default `60s`).
    pub interval: Option<DurationInput>,
    /// At most the interval (default `10s`).
    pub timeout: Option<DurationInput>,
    /// 1–20 (default 3).
    pub failure_threshold: Option<i64>,
    /// 1–20 (default 2).
    pub success_threshold: Option<i64>,
    /// Condition expressions, e.g. `status == 200`, `response_time < 500ms`.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// Labels (alert rules and maintenance windows select by them).
    pub labels: Option<BTreeMap<String, String>>,
    /// False pauses the check (default true).
    pub enabled: Option<bool>,
    /// `http`: method (default `GET`).
    pub method: Option<String>,
    /// `http`: request headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// `http`: request body.
    pub body: Option<String>,
}

/// `PATCH …/health-checks/{id}`: absent fields are unchanged (the kind cannot change).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckPatch {
    /// New name.
    pub name: Option<String>,
    /// New target (same shape as on create).
    #[schemars(with = "Option<serde_json::Value>")]
    pub target: Option<serde_json::Value>,
    /// New interval.
    pub interval: Option<DurationInput>,
    /// New timeout.
    pub timeout: Option<DurationInput>,
    /// New failure threshold.
    pub failure_threshold: Option<i64>,
    /// New success threshold.
    pub success_threshold: Option<i64>,
    /// New conditions.
    pub conditions: Option<Vec<String>>,
    /// New labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Pause (false) or resume (true).
    pub enabled: Option<bool>,
    /// New method.
    pub method: Option<String>,
    /// New headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// New body.
    pub body: Option<String>,
}

impl CheckInput {
    /// The stored check as an input, so a PATCH can be merged and validated like a create.
    pub fn from_stored(check: &HealthCheck) -> CheckInput {
        let spec = &check.spec;
        let target = if check.kind == "dns" {
            spec.get("dns").cloned().unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::String(check.target.clone())
        };
        CheckInput {
            name: check.name.clone(),
            kind: check.kind.clone(),
            target,
            interval: Some(DurationInput::Text(format!("{}ms", check.interval_ms))),
            timeout: Some(DurationInput::Text(format!("{}ms", check.timeout_ms))),
            failure_threshold: Some(i64::from(check.failure_threshold)),
            success_threshold: Some(i64::from(check.success_threshold)),
            conditions: serde_json::from_value(check.conditions.clone()).unwrap_or_default(),
            labels: serde_json::from_value(check.labels.clone()).ok(),
            enabled: Some(check.enabled),
            method: spec["method"].as_str().map(str::to_owned),
            headers: serde_json::from_value(spec["headers"].clone()).ok(),
            body: spec["body"].as_str().map(str::to_owned),
        }
    }

    /// This input with `patch` applied.
    pub fn merged(mut self, patch: CheckPatch) -> CheckInput {
        macro_rules! take {
            ($($field:ident),+) => { $( if let Some(v) = patch.$field { self.$field = v.into(); } )+ };
        }
        take!(name, target, conditions);
        macro_rules! take_opt {
            ($($field:ident),+) => { $( if patch.$field.is_some() { self.$field = patch.$field; } )+ };
        }
        take_opt!(
            interval,
            timeout,
            failure_threshold,
            success_threshold,
            labels,
            enabled,
            method,
            headers,
            body
        );
        self
    }

    /// Validates everything (422 listing every problem), including the outbound-address policy
    /// on the target, and returns what to store.
    pub async fn validate(
        self,
        policy: &OutboundPolicy,
        min_interval: Duration,
    ) -> Result<NewCheck, ApiError> {
        let mut errors = Vec::new();
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push(FieldError::new("/name", "must be 1–200 characters"));
        }
        let kind = CheckKind::parse(&self.kind);
        if kind.is_none() {
            errors.push(FieldError::new(
                "/kind",
                format!("must be one of: {}", CHECK_KINDS.join(", ")),
            ));
        }
        let interval = check_duration(&self.interval, DEFAULT_INTERVAL, "/interval", &mut errors);
        if interval.is_some_and(|i| !(min_interval..=MAX_INTERVAL).contains(&i)) {
            errors.push(FieldError::new(
                "/interval",
                format!(
                    "must be between {} and 1h",
                    humantime::format_duration(min_interval)
                ),
            ));
        }
        let timeout = check_duration(&self.timeout, DEFAULT_TIMEOUT, "/timeout", &mut errors);
        if let (Some(t), Some(i)) = (timeout, interval) {
            if t.is_zero() || t > i {
                errors.push(FieldError::new(
                    "/timeout",
                    "must be more than 0 and at most the interval",
                ));
            }
        }
        let failure_threshold =
            check_threshold(self.failure_threshold, 3, "/failure_threshold", &mut errors);
        let success_threshold =
            check_threshold(self.success_threshold, 2, "/success_threshold", &mut errors);
        if self.conditions.len() > MAX_CONDITIONS {
            errors.push(FieldError::new(
                "/conditions",
                format!("at most {MAX_CONDITIONS} conditions"),
            ));
        }
        if let Some(kind) = kind {
            for (i, expr) in self.conditions.iter().enumerate() {
                if let Err(e) = parse_condition(expr, kind) {
                    errors.push(FieldError::new(format!("/conditions/{i}"), e));
                }
            }
        }
        if kind != Some(CheckKind::Http)
            && (self.method.is_some() || self.headers.is_some() || self.body.is_some())
        {
            errors.push(FieldError::new(
                "/method",
                "method, headers and body apply to http checks only",
            ));
        }
        let method = self.method.clone().unwrap_or_else(|| "GET".to_owned());
        if reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_err() {
            errors.push(FieldError::new("/method", "not an HTTP method"));
        }
        let (target, spec) = match kind {
            Some(kind) => check_target(kind, &self, policy, &mut errors).await,
            None => (String::new(), serde_json::Value::Null),
        };
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis() as i32);
        Ok(NewCheck {
            name,
            kind: kind.map_or("http", CheckKind::as_str),
            target,
            spec,
            conditions: self.conditions,
            labels: serde_json::json!(self.labels.unwrap_or_default()),
            interval_ms: ms(interval),
            timeout_ms: ms(timeout),
            failure_threshold,
            success_threshold,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

fn check_duration(
    input: &Option<DurationInput>,
    default: Duration,
    pointer: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Duration> {
    match input {
        None => Some(default),
        Some(value) => {
            let parsed = value.parse();
            if parsed.is_none() {
                errors.push(FieldError::new(
                    pointer,
                    "must be a duration such as 30s, 500ms or 1h",
                ));
            }
            parsed
        }
    }
}

fn check_threshold(
    value: Option<i64>,
    default: i32,
    pointer: &str,
    errors: &mut Vec<FieldError>,
) -> i32 {
    match value {
        None => default,
        Some(v) if (1..=20).contains(&v) => v as i32,
        Some(_) => {
            errors.push(FieldError::new(pointer, "must be between 1 and 20"));
            default
        }
    }
}

/// Splits `host:port` (IPv6 in brackets).
pub fn split_host_port(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_owned(), port))
}

/// The DNS target of a `dns` check.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsTarget {
    /// The name queried.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `MX` or `TXT`.
    pub record_type: String,
    /// `ip:port` of the resolver asked (default: the system's).
    pub resolver: Option<String>,
}

async fn check_target(
    kind: CheckKind,
    input: &CheckInput,
    policy: &OutboundPolicy,
    errors: &mut Vec<FieldError>,
) -> (String, serde_json::Value) {
    let mut spec = serde_json::json!({});
    let target = match kind {
        CheckKind::Http => {
            let Some(url) = input.target.as_str() else {
                errors.push(FieldError::new("/target", "must be a URL"));
                return (String::new(), spec);
            };
            if url.len() > 2048 {
                errors.push(FieldError::new("/target", "at most 2048 characters"));
            } else if let Err(e) = policy.check_url(url).await {
                errors.push(FieldError::new("/target", e.to_string()));
            }
            spec = serde_json::json!({
                "method": input.method.clone().unwrap_or_else(|| "GET".to_owned()).to_ascii_uppercase(),
                "headers": input.headers.clone().unwrap_or_default(),
                "body": input.body,
            });
            url.to_owned()
        }
        CheckKind::Tcp | CheckKind::Tls => {
            let Some(target) = input.target.as_str() else {
                errors.push(FieldError::new("/target", "must be host:port"));
                return (String::new(), spec);
            };
            match split_host_port(target) {
                None => errors.push(FieldError::new("/target", "must be host:port")),
                Some((host, port)) => {
                    if let Err(e) = policy.check_host(&host, port).await {
                        errors.push(FieldError::new("/target", e.to_string()));
                    }
                }
            }
            target.to_owned()
        }
        CheckKind::Dns => {
            let dns: DnsTarget = match serde_json::from_value(input.target.clone()) {
                Ok(dns) => dns,
                Err(e) => {
                    errors.push(FieldError::new(
                        "/target",
                        format!("must be {{name, record_type, resolver?}}: {e}"),
                    ));
                    return (String::new(), spec);
                }
            };
            if dns.name.is_empty() || dns.name.len() > 253 {
                errors.push(FieldError::new("/target/name", "must be a DNS name"));
            }
            if !["A", "AAAA", "CNAME", "MX", "TXT"].contains(&dns.record_type.as_str()) {
                errors.push(FieldError::new(
                    "/target/record_type",
                    "must be one of: A, AAAA, CNAME, MX, TXT",
                ));
            }
            if let Some(resolver) = &dns.resolver {
                match resolver.parse::<std::net::SocketAddr>() {
                    Err(_) => errors.push(FieldError::new("/target/resolver", "must be ip:port")),
                    Ok(addr) => {
                        if let Err(e) = policy.check_host(&addr.ip().to_string(), addr.port()).await
                        {
                            errors.push(FieldError::new("/target/resolver", e.to_string()));
                        }
                    }
                }
            }
            spec = serde_json::json!({ "dns": dns });
            dns.name
        }
    };
    (target, spec)
}

/// A health check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HealthCheckView {
    /// Id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// Name.
    pub name: String,
    /// `http`, `tcp`, `dns`, `tls`.
    pub kind: String,
    /// URL, `host:port`, or `{name, record_type, resolver?}`.
    #[schemars(with = "serde_json::Value")]
    pub target: serde_json::Value,
    /// `http`: method.
    pub method: Option<String>,
    /// `http`: headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// `http`: body.
    pub body: Option<String>,
    /// Run interval (`60s`).
    pub interval: String,
    /// Timeout of one run (`10s`).
    pub timeout: String,
    /// Failing runs in a row before `down`/`degraded`.
    pub failure_threshold: i32,
    /// Succeeding runs in a row before `up`.
    pub success_threshold: i32,
    /// Conditions.
    pub conditions: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// False: paused.
    pub enabled: bool,
    /// `unknown`, `up`, `down`, `degraded`, `maintenance` or `paused`.
    pub status: String,
    /// When the status last changed.
    pub status_since: DateTime<Utc>,
    /// When it last ran.
    pub last_checked_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl HealthCheckView {
    /// The view of `check`; `in_maintenance` says whether a window covers it now.
    pub fn new(check: &HealthCheck, in_maintenance: bool) -> Self {
        let input = CheckInput::from_stored(check);
        let status = if !check.enabled {
            "paused".to_owned()
        } else if in_maintenance {
            "maintenance".to_owned()
        } else {
            check.state.clone()
        };
        let http = check.kind == "http";
        Self {
            id: check.id,
            org_id: check.org_id,
            name: check.name.clone(),
            kind: check.kind.clone(),
            target: input.target,
            method: http.then_some(input.method).flatten(),
            headers: http.then_some(input.headers).flatten(),
            body: http.then_some(input.body).flatten(),
            interval: format_ms(i64::from(check.interval_ms)),
            timeout: format_ms(i64::from(check.timeout_ms)),
            failure_threshold: check.failure_threshold,
            success_threshold: check.success_threshold,
            conditions: input.conditions,
            labels: input.labels.unwrap_or_default(),
            enabled: check.enabled,
            status,
            status_since: check.status_since,
            last_checked_at: check.last_checked_at,
            created_at: check.created_at,
            updated_at: check.updated_at,
        }
    }
}

/// One condition's verdict in a result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConditionResult {
    /// The expression.
    pub expr: String,
    /// Whether it held.
    pub success: bool,
    /// What was observed.
    pub actual: Option<String>,
}

/// One run of a check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResultView {
    /// Id (time-ordered).
    pub id: Uuid,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Every condition held (and the target answered).
    pub success: bool,
    /// Time to the answer, in milliseconds.
    pub response_time_ms: i32,
    /// Each condition's verdict.
    pub conditions: Vec<ConditionResult>,
    /// Why the target did not answer.
    pub error: Option<String>,
}

impl From<CheckResult> for ResultView {
    fn from(r: CheckResult) -> Self {
        Self {
            id: r.id,
            at: r.at,
            success: r.success,
            response_time_ms: r.response_time_ms,
            conditions: serde_json::from_value(r.conditions).unwrap_or_default(),
            error: r.error,
        }
    }
}

/// A notification of an incident transition to a channel.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NotificationView {
    /// Id.
    pub id: Uuid,
    /// The alert channel.
    pub channel_id: Uuid,
    /// `opened`, `resolved`, `repeat-N`.
    pub transition: String,
    /// `pending`, `sent`, `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            channel_id: n.channel_id,
            transition: n.transition,
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            sent_at: n.sent_at,
            created_at: n.created_at,
        }
    }
}

/// An incident: a period during which a check was failing.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IncidentView {
    /// Id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// The check.
    pub check_id: Uuid,
    /// `open` or `resolved`.
    pub status: String,
    /// `down` or `degraded`.
    pub cause: String,
    /// First failing run.
    pub opened_at: DateTime<Utc>,
    /// Acknowledgement time.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// Resolution time.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Notifications recorded for it (in lists: empty; see `GET …/incidents/{id}`).
    pub notifications: Vec<NotificationView>,
}

impl IncidentView {
    /// The view of `incident` with its `notifications`.
    pub fn new(incident: Incident, notifications: Vec<Notification>) -> Self {
        Self {
            id: incident.id,
            org_id: incident.org_id,
            check_id: incident.check_id,
            status: incident.status,
            cause: incident.cause,
            opened_at: incident.opened_at,
            acknowledged_at: incident.acknowledged_at,
            acknowledged_by: incident.acknowledged_by,
            resolved_at: incident.resolved_at,
            notifications: notifications.into_iter().map(Into::into).collect(),
        }
    }
}

/// The payload of `health.down`, `health.degraded`, `health.up`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HealthChangeEvent {
    /// The check.
    pub check_id: Uuid,
    /// Its name.
    pub name: String,
    /// State before.
    pub previous: String,
    /// State now.
    pub status: String,
    /// Whether a maintenance window covers it (no notification is sent).
    pub in_maintenance: bool,
    /// The run that changed it.
    pub result: ResultView,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splits() {
        assert_eq!(
            split_host_port("127.0.0.1:80"),
            Some(("127.0.0.1".into(), 80))
        );
        assert_eq!(split_host_port("[::1]:443"), Some(("::1".into(), 443)));
        assert_eq!(split_host_port("example.com"), None);
        assert_eq!(split_host_port("example.com:0"), None);
        assert_eq!(format_ms(60_000), "60s");
        assert_eq!(format_ms(1500), "1500ms");
    }
}
