//! Alert channels, alert rules and maintenance windows as the API takes and answers them.

use super::health::DurationInput;
use crate::error::{ApiError, FieldError};
use crate::store::alerts::{Channel, NewRule, NewWindow, Rule, Window};
use crate::webhooks::outbound::OutboundPolicy;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// The channel kinds.
pub const CHANNEL_KINDS: [&str; 4] = ["webhook", "slack", "email", "pagerduty"];

/// The schema of a channel kind: one of [`CHANNEL_KINDS`].
fn channel_kind_schema(_gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    crate::domain::schema::string_enum(&CHANNEL_KINDS)
}

/// Body of `POST …/alert-channels`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    /// Display name.
    pub name: String,
    /// `webhook` (signed like webhooks), `slack` (incoming webhook), `email` (SMTP),
    /// `pagerduty` (Events API v2).
    #[schemars(schema_with = "channel_kind_schema")]
    pub kind: String,
    /// `webhook`, `slack`: where to POST; `pagerduty`: the Events API URL (default
    /// `GANTRY_PAGERDUTY_URL`).
    pub url: Option<String>,
    /// `email`: recipients.
    pub to: Option<Vec<String>>,
    /// `pagerduty`: the integration's routing key.
    pub routing_key: Option<String>,
}

impl ChannelInput {
    /// Validates the input (422 with pointers) and returns the config to store.
    pub async fn validate(
        &self,
        policy: &OutboundPolicy,
        smtp_configured: bool,
    ) -> Result<serde_json::Value, ApiError> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            errors.push(FieldError::new("/name", "must be 1–200 characters"));
        }
        if !CHANNEL_KINDS.contains(&self.kind.as_str()) {
            errors.push(FieldError::new(
                "/kind",
                "must be one of: webhook, slack, email, pagerduty",
            ));
        }
        let needs_url = matches!(self.kind.as_str(), "webhook" | "slack");
        match &self.url {
            Some(url) => {
                if let Err(e) = policy.check_url(url).await {
                    errors.push(FieldError::new("/url", e.to_string()));
                }
            }
            None if needs_url => errors.push(FieldError::new("/url", "is required")),
            None => {}
        }
        if self.kind == "email" {
            match &self.to {
                Some(to) if !to.is_empty() => {
                    for (i, address) in to.iter().enumerate() {
                        if address.parse::<lettre::Address>().is_err() {
                            errors
                                .push(FieldError::new(format!("/to/{i}"), "not an email address"));
                        }
                    }
                }
                _ => errors.push(FieldError::new("/to", "needs at least one address")),
            }
            if !smtp_configured {
                errors.push(FieldError::new(
                    "/kind",
                    "email channels need GANTRY_SMTP_URL to be configured",
                ));
            }
        }
        if self.kind == "pagerduty" && self.routing_key.as_deref().is_none_or(str::is_empty) {
            errors.push(FieldError::new("/routing_key", "is required"));
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(serde_json::json!({
            "url": self.url,
            "to": self.to,
            "routing_key": self.routing_key,
        }))
    }
}

/// Body of `PATCH …/alert-channels/{id}`: the fields to change (the kind cannot change; the
/// result is validated as a whole, as on create).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    /// New display name.
    pub name: Option<String>,
    /// New URL (`webhook`, `slack`, `pagerduty`).
    pub url: Option<String>,
    /// New recipients (`email`).
    pub to: Option<Vec<String>>,
    /// New routing key (`pagerduty`).
    pub routing_key: Option<String>,
}

impl ChannelPatch {
    /// The channel's create input with this patch applied.
    pub fn apply_to(self, channel: &Channel) -> ChannelInput {
        let config = &channel.config;
        ChannelInput {
            name: self.name.unwrap_or_else(|| channel.name.clone()),
            kind: channel.kind.clone(),
            url: self
                .url
                .or_else(|| config["url"].as_str().map(str::to_owned)),
            to: self
                .to
                .or_else(|| serde_json::from_value(config["to"].clone()).ok()),
            routing_key: self
                .routing_key
                .or_else(|| config["routing_key"].as_str().map(str::to_owned)),
        }
    }
}

/// An alert channel (a `webhook` channel's secret is shown only when it is created).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChannelView {
    /// Id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// URL, if the kind has one.
    pub url: Option<String>,
    /// Email recipients.
    pub to: Option<Vec<String>>,
    /// Signing secret of a `webhook` channel: in the create answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<&Channel> for ChannelView {
    fn from(c: &Channel) -> Self {
        Self {
            id: c.id,
            org_id: c.org_id,
            name: c.name.clone(),
            kind: c.kind.clone(),
            url: c.config["url"].as_str().map(str::to_owned),
            to: serde_json::from_value(c.config["to"].clone()).ok(),
            secret: None,
            created_at: c.created_at,
        }
    }
}

/// The answer of `POST …/alert-channels/{id}/test`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChannelTestView {
    /// Whether the test notification was accepted by the receiver.
    pub success: bool,
    /// Why not.
    pub error: Option<String>,
}

/// Body of `POST …/alert-rules`: a rule for one check (`check_id`) or for every check carrying
/// `labels`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// The check (or give `labels`).
    pub check_id: Option<Uuid>,
    /// Labels a check must all carry (or give `check_id`).
    pub labels: Option<BTreeMap<String, String>>,
    /// Alert channel ids (at least one).
    #[schemars(length(min = 1))]
    pub channels: Vec<Uuid>,
    /// Notify on resolution too (default true).
    pub send_on_resolved: Option<bool>,
    /// Re-notify an unacknowledged open incident this often (default `4h`).
    pub repeat_interval: Option<DurationInput>,
    /// Incidents opened within this go out as one notification (default `30s`).
    pub group_wait: Option<DurationInput>,
}

impl RuleInput {
    /// Validates the shape (channel and check existence is checked by the caller).
    pub fn validate(self) -> Result<NewRule, ApiError> {
        let mut errors = Vec::new();
        if self.check_id.is_some() == self.labels.is_some() {
            errors.push(FieldError::new(
                "/check_id",
                "give exactly one of check_id and labels",
            ));
        }
        if self.channels.is_empty() {
            errors.push(FieldError::new("/channels", "needs at least one channel"));
        }
        let mut seconds = |input: &Option<DurationInput>, default: u64, pointer: &str| match input
            .as_ref()
            .map(DurationInput::parse)
        {
            None => default as i32,
            Some(Some(d)) if d <= Duration::from_secs(7 * 24 * 3600) => d.as_secs() as i32,
            Some(_) => {
                errors.push(FieldError::new(pointer, "must be a duration up to 7d"));
                0
            }
        };
        let repeat_interval_secs = seconds(&self.repeat_interval, 4 * 3600, "/repeat_interval");
        let group_wait_secs = seconds(&self.group_wait, 30, "/group_wait");
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(NewRule {
            check_id: self.check_id,
            labels: self.labels.map(|l| serde_json::json!(l)),
            channels: self.channels,
            send_on_resolved: self.send_on_resolved.unwrap_or(true),
            repeat_interval_secs,
            group_wait_secs,
        })
    }
}

/// Body of `PATCH …/alert-rules/{id}`: the fields to change. Giving `check_id` turns a label
/// rule into a per-check rule and `labels` the reverse; the result is validated as on create.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    /// The check (replaces `labels`).
    pub check_id: Option<Uuid>,
    /// Labels (replace `check_id`).
    pub labels: Option<BTreeMap<String, String>>,
    /// Alert channel ids (at least one).
    #[schemars(length(min = 1))]
    pub channels: Option<Vec<Uuid>>,
    /// Notify on resolution too.
    pub send_on_resolved: Option<bool>,
    /// Re-notify an unacknowledged open incident this often.
    pub repeat_interval: Option<DurationInput>,
    /// Incidents opened within this go out as one notification.
    pub group_wait: Option<DurationInput>,
}

impl RulePatch {
    /// The rule's create input with this patch applied.
    pub fn apply_to(self, rule: &Rule) -> RuleInput {
        let (check_id, labels) = match (self.check_id, self.labels) {
            (None, None) => (
                rule.check_id,
                rule.labels
                    .clone()
                    .and_then(|l| serde_json::from_value(l).ok()),
            ),
            given => given,
        };
        RuleInput {
            check_id,
            labels,
            channels: self.channels.unwrap_or_else(|| rule.channel_ids()),
            send_on_resolved: Some(self.send_on_resolved.unwrap_or(rule.send_on_resolved)),
            repeat_interval: Some(self.repeat_interval.unwrap_or_else(|| {
                DurationInput::Seconds(rule.repeat_interval_secs.max(0) as u64)
            })),
            group_wait: Some(
                self.group_wait
                    .unwrap_or_else(|| DurationInput::Seconds(rule.group_wait_secs.max(0) as u64)),
            ),
        }
    }
}

/// An alert rule.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RuleView {
    /// Id.
    pub id: Uuid,
    /// The check, for a per-check rule.
    pub check_id: Option<Uuid>,
    /// Labels, for a label rule.
    pub labels: Option<BTreeMap<String, String>>,
    /// Channel ids.
    pub channels: Vec<Uuid>,
    /// Notify on resolution.
    pub send_on_resolved: bool,
    /// Repeat interval (`4h` as seconds text, e.g. `14400s`).
    pub repeat_interval: String,
    /// Group wait.
    pub group_wait: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<&Rule> for RuleView {
    fn from(r: &Rule) -> Self {
        Self {
            id: r.id,
            check_id: r.check_id,
            labels: r
                .labels
                .clone()
                .and_then(|l| serde_json::from_value(l).ok()),
            channels: r.channel_ids(),
            send_on_resolved: r.send_on_resolved,
            repeat_interval: format!("{}s", r.repeat_interval_secs),
            group_wait: format!("{}s", r.group_wait_secs),
            created_at: r.created_at,
        }
    }
}

/// Body of `POST …/maintenance-windows`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowInput {
    /// Display name.
    pub name: String,
    /// Start (of the first occurrence, when recurring).
    pub starts_at: DateTime<Utc>,
    /// End (or give `duration`).
    pub ends_at: Option<DateTime<Utc>>,
    /// Length (or give `ends_at`); required with `recurrence`.
    pub duration: Option<DurationInput>,
    /// Five-field cron schedule of the starts (UTC), e.g. `0 3 * * SUN`.
    pub recurrence: Option<String>,
    /// Checks covered (or give `labels`).
    pub check_ids: Option<Vec<Uuid>>,
    /// Labels a covered check carries (or give `check_ids`).
    pub labels: Option<BTreeMap<String, String>>,
}

impl WindowInput {
    /// Validates the input (422 with pointers).
    pub fn validate(self) -> Result<NewWindow, ApiError> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            errors.push(FieldError::new("/name", "must be 1–200 characters"));
        }
        let duration = match (&self.ends_at, &self.duration) {
            (Some(end), None) if *end > self.starts_at => (*end - self.starts_at)
                .num_seconds()
                .min(i64::from(i32::MAX))
                as i32,
            (Some(_), None) => {
                errors.push(FieldError::new("/ends_at", "must be after starts_at"));
                0
            }
            (None, Some(d)) => match d.parse() {
                Some(d) if !d.is_zero() && d <= Duration::from_secs(31 * 24 * 3600) => {
                    d.as_secs() as i32
                }
                _ => {
                    errors.push(FieldError::new(
                        "/duration",
                        "must be a duration between 1s and 31d",
                    ));
                    0
                }
            },
            _ => {
                errors.push(FieldError::new(
                    "/ends_at",
                    "give exactly one of ends_at and duration",
                ));
                0
            }
        };
        if let Some(cron) = &self.recurrence {
            if let Err(e) = crate::domain::k8s::cron::check_cron(cron) {
                errors.push(FieldError::new("/recurrence", e));
            } else if cron.parse::<croner::Cron>().is_err() {
                errors.push(FieldError::new("/recurrence", "not a supported schedule"));
            }
        }
        if self.check_ids.is_some() == self.labels.is_some() {
            errors.push(FieldError::new(
                "/check_ids",
                "give exactly one of check_ids and labels",
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(NewWindow {
            name: self.name.trim().to_owned(),
            starts_at: self.starts_at,
            ends_at: self.ends_at.filter(|_| self.recurrence.is_none()),
            duration_secs: duration,
            recurrence: self.recurrence,
            check_ids: self.check_ids,
            labels: self.labels.map(|l| serde_json::json!(l)),
        })
    }
}

/// Body of `PATCH …/maintenance-windows/{id}`: the fields to change. `ends_at` replaces the
/// length and `duration` the end; `check_ids` replaces `labels` and the reverse; `recurrence:
/// null` makes the window one-off. The result is validated as on create.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowPatch {
    /// New name.
    pub name: Option<String>,
    /// New start.
    pub starts_at: Option<DateTime<Utc>>,
    /// New end.
    pub ends_at: Option<DateTime<Utc>>,
    /// New length.
    pub duration: Option<DurationInput>,
    /// New cron schedule (`null` clears it).
    #[serde(default, deserialize_with = "crate::domain::schema::present_or_null")]
    #[schemars(with = "Option<String>")]
    pub recurrence: Option<Option<String>>,
    /// Checks covered (replaces `labels`).
    pub check_ids: Option<Vec<Uuid>>,
    /// Labels covered (replace `check_ids`).
    pub labels: Option<BTreeMap<String, String>>,
}

impl WindowPatch {
    /// The window's create input with this patch applied.
    pub fn apply_to(self, w: &Window) -> WindowInput {
        let starts_at = self.starts_at.unwrap_or(w.starts_at);
        let (ends_at, duration) = match (self.ends_at, self.duration) {
            (None, None) => (
                None,
                Some(DurationInput::Seconds(w.duration_secs.max(0) as u64)),
            ),
            given => given,
        };
        let (check_ids, labels) = match (self.check_ids, self.labels) {
            (None, None) => (
                w.check_ids
                    .clone()
                    .and_then(|v| serde_json::from_value(v).ok()),
                w.labels
                    .clone()
                    .and_then(|v| serde_json::from_value(v).ok()),
            ),
            given => given,
        };
        WindowInput {
            name: self.name.unwrap_or_else(|| w.name.clone()),
            starts_at,
            ends_at,
            duration,
            recurrence: self.recurrence.unwrap_or_else(|| w.recurrence.clone()),
            check_ids,
            labels,
        }
    }
}

/// A maintenance window.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WindowView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Start of the first occurrence.
    pub starts_at: DateTime<Utc>,
    /// End of a one-off window.
    pub ends_at: Option<DateTime<Utc>>,
    /// Length of each occurrence (`3600s`).
    pub duration: String,
    /// Cron schedule of the starts.
    pub recurrence: Option<String>,
    /// Covered checks.
    pub check_ids: Option<Vec<Uuid>>,
    /// Covered labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Whether it is in effect now.
    pub active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl WindowView {
    /// The view of `w` as of `now`.
    pub fn new(w: &Window, now: DateTime<Utc>) -> Self {
        Self {
            id: w.id,
            name: w.name.clone(),
            starts_at: w.starts_at,
            ends_at: w.ends_at,
            duration: format!("{}s", w.duration_secs),
            recurrence: w.recurrence.clone(),
            check_ids: w
                .check_ids
                .clone()
                .and_then(|v| serde_json::from_value(v).ok()),
            labels: w
                .labels
                .clone()
                .and_then(|v| serde_json::from_value(v).ok()),
            active: window_active(w, now),
            created_at: w.created_at,
        }
    }
}

/// True when the labels of a check carry every label of `wanted`.
pub fn labels_match(check_labels: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    let Some(wanted) = wanted.as_object() else {
        return false;
    };
    wanted.iter().all(|(k, v)| check_labels.get(k) == Some(v))
}

/// True when window `w` covers `check_id` (with `labels`).
pub fn window_covers(w: &Window, check_id: Uuid, labels: &serde_json::Value) -> bool {
    if let Some(ids) = &w.check_ids {
        let ids: Vec<Uuid> = serde_json::from_value(ids.clone()).unwrap_or_default();
        return ids.contains(&check_id);
    }
    w.labels.as_ref().is_some_and(|l| labels_match(labels, l))
}

/// True when window `w` is in effect at `now`.
pub fn window_active(w: &Window, now: DateTime<Utc>) -> bool {
    if now < w.starts_at {
        return false;
    }
    let length = chrono::Duration::seconds(i64::from(w.duration_secs));
    let Some(recurrence) = &w.recurrence else {
        let end = w.ends_at.unwrap_or(w.starts_at + length);
        return now < end;
    };
    // The latest occurrence started within `length` before now is the one in effect.
    let Ok(cron) = recurrence.parse::<croner::Cron>() else {
        return false;
    };
    let from = (now - length).max(w.starts_at);
    cron.find_next_occurrence(&from, true)
        .is_ok_and(|start| start <= now)
}

/// True when a rule applies to the check `check_id` with `labels`.
pub fn rule_matches(rule: &Rule, check_id: Uuid, labels: &serde_json::Value) -> bool {
    match (&rule.check_id, &rule.labels) {
        (Some(id), _) => *id == check_id,
        (None, Some(wanted)) => labels_match(labels, wanted),
        (None, None) => false,
    }
}
