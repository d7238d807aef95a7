//! The transactional outbox: event types, the envelope every consumer sees, and the writer used
//! inside the transaction of each state change.

pub mod hub;

use crate::store::outbox::{self as outbox_store, NewEvent, StoredEvent};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use sea_orm::{ConnectionTrait, DbErr};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Every event type Gantry emits: `aggregate.verb`, past tense for facts, `*.requested` for
/// commands. The one place event names are spelled; writers, job kinds and the registry use
/// these variants, never string literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An organization was created.
    OrgCreated,
    /// An organization's name or slug changed.
    OrgUpdated,
    /// An organization was deleted.
    OrgDeleted,
    /// A member was added.
    MemberAdded,
    /// A member's role changed.
    MemberRoleChanged,
    /// A member was removed (or left).
    MemberRemoved,
    /// A workspace was requested (command for the vCluster provisioner).
    WorkspaceRequested,
    /// A workspace's deletion was requested (command for the vCluster provisioner).
    WorkspaceDeletionRequested,
    /// The provisioner started creating a workspace's vCluster.
    WorkspaceProvisioning,
    /// A workspace's vCluster is ready.
    WorkspaceReady,
    /// Provisioning a workspace failed (see its `error`).
    WorkspaceFailed,
    /// A workspace and its vCluster are gone.
    WorkspaceDeleted,
    /// A ready workspace's host objects were missing or changed and were re-applied.
    WorkspaceDrifted,
    /// A project was created.
    ProjectCreated,
    /// A project was renamed.
    ProjectUpdated,
    /// A project was deleted.
    ProjectDeleted,
    /// A new graph version was stored.
    ProjectGraphUpdated,
    /// A project's namespace exists in its workspace's vCluster.
    ProjectReady,
    /// Creating a project's namespace failed (see its `error`).
    ProjectFailed,
    /// A codegen job was submitted (command for the codegen runner).
    CodegenRequested,
    /// A codegen runner started a job.
    CodegenStarted,
    /// A codegen job finished with artifacts (and its commit, when delivered to Git).
    CodegenSucceeded,
    /// A codegen job failed (see its `error`).
    CodegenFailed,
    /// A codegen job was cancelled.
    CodegenCancelled,
    /// A probe was requested (`POST /v1/admin/probes`; command for the probe job kind).
    ProbeRequested,
    /// A health check went down (no answer, past its failure threshold).
    HealthDown,
    /// A health check is degraded (answers, but some conditions fail).
    HealthDegraded,
    /// A health check is up (past its success threshold).
    HealthUp,
    /// An incident was opened for a failing check.
    IncidentOpened,
    /// Someone acknowledged an incident.
    IncidentAcknowledged,
    /// The check of an incident recovered.
    IncidentResolved,
    /// A backup was requested (command for the backup executor).
    BackupRequested,
    /// A backup executor started a backup.
    BackupStarted,
    /// A backup's manifest is stored: it can be restored.
    BackupSucceeded,
    /// A backup failed (see its `error`).
    BackupFailed,
    /// Retention expired a backup; its unreferenced chunks are deleted.
    BackupExpired,
    /// A restore was requested (command for the backup executor).
    RestoreRequested,
    /// A backup executor started a restore.
    RestoreStarted,
    /// A restore applied (or, dry run, listed) its objects.
    RestoreSucceeded,
    /// A restore failed or was refused (see its `error`).
    RestoreFailed,
    /// A team was created.
    TeamCreated,
    /// A team's name or description changed.
    TeamUpdated,
    /// A team was deleted (with its memberships and project roles; its projects' bindings are
    /// re-applied without it).
    TeamDeleted,
    /// A user was put in a team.
    TeamMemberAdded,
    /// A user was taken out of a team.
    TeamMemberRemoved,
    /// A team was given a role on a project (or its role changed); the project's bindings are
    /// re-applied.
    TeamProjectAssigned,
    /// A team's role on a project was removed; the project's bindings are re-applied.
    TeamProjectUnassigned,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 47] = [
        EventType::OrgCreated,
        EventType::OrgUpdated,
        EventType::OrgDeleted,
        EventType::MemberAdded,
        EventType::MemberRoleChanged,
        EventType::MemberRemoved,
        EventType::WorkspaceRequested,
        EventType::WorkspaceDeletionRequested,
        EventType::WorkspaceProvisioning,
        EventType::WorkspaceReady,
        EventType::WorkspaceFailed,
        EventType::WorkspaceDeleted,
        EventType::WorkspaceDrifted,
        EventType::ProjectCreated,
        EventType::ProjectUpdated,
        EventType::ProjectDeleted,
        EventType::ProjectGraphUpdated,
        EventType::ProjectReady,
        EventType::ProjectFailed,
        EventType::CodegenRequested,
        EventType::CodegenStarted,
        EventType::CodegenSucceeded,
        EventType::CodegenFailed,
        EventType::CodegenCancelled,
        EventType::ProbeRequested,
        EventType::HealthDown,
        EventType::HealthDegraded,
        EventType::HealthUp,
        EventType::IncidentOpened,
        EventType::IncidentAcknowledged,
        EventType::IncidentResolved,
        EventType::BackupRequested,
        EventType::BackupStarted,
        EventType::BackupSucceeded,
        EventType::BackupFailed,
        EventType::BackupExpired,
        EventType::RestoreRequested,
        EventType::RestoreStarted,
        EventType::RestoreSucceeded,
        EventType::RestoreFailed,
        EventType::TeamCreated,
        EventType::TeamUpdated,
        EventType::TeamDeleted,
        EventType::TeamMemberAdded,
        EventType::TeamMemberRemoved,
        EventType::TeamProjectAssigned,
        EventType::TeamProjectUnassigned,
    ];

    /// The wire name (`const`, so job kinds can list their command events in constants).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::OrgCreated => "org.created",
            EventType::OrgUpdated => "org.updated",
            EventType::OrgDeleted => "org.deleted",
            EventType::MemberAdded => "member.added",
            EventType::MemberRoleChanged => "member.role_changed",
            EventType::MemberRemoved => "member.removed",
            EventType::WorkspaceRequested => "workspace.requested",
            EventType::WorkspaceDeletionRequested => "workspace.deletion_requested",
            EventType::WorkspaceProvisioning => "workspace.provisioning",
            EventType::WorkspaceReady => "workspace.ready",
            EventType::WorkspaceFailed => "workspace.failed",
            EventType::WorkspaceDeleted => "workspace.deleted",
            EventType::WorkspaceDrifted => "workspace.drifted",
            EventType::ProjectCreated => "project.created",
            EventType::ProjectUpdated => "project.updated",
            EventType::ProjectDeleted => "project.deleted",
            EventType::ProjectGraphUpdated => "project.graph_updated",
            EventType::ProjectReady => "project.ready",
            EventType::ProjectFailed => "project.failed",
            EventType::CodegenRequested => "codegen.requested",
            EventType::CodegenStarted => "codegen.started",
            EventType::CodegenSucceeded => "codegen.succeeded",
            EventType::CodegenFailed => "codegen.failed",
            EventType::CodegenCancelled => "codegen.cancelled",
            EventType::ProbeRequested => "probe.requested",
            EventType::HealthDown => "health.down",
            EventType::HealthDegraded => "health.degraded",
            EventType::HealthUp => "health.up",
            EventType::IncidentOpened => "incident.opened",
            EventType::IncidentAcknowledged => "incident.acknowledged",
            EventType::IncidentResolved => "incident.resolved",
            EventType::BackupRequested => "backup.requested",
            EventType::BackupStarted => "backup.started",
            EventType::BackupSucceeded => "backup.succeeded",
            EventType::BackupFailed => "backup.failed",
            EventType::BackupExpired => "backup.expired",
            EventType::RestoreRequested => "restore.requested",
            EventType::RestoreStarted => "restore.started",
            EventType::RestoreSucceeded => "restore.succeeded",
            EventType::RestoreFailed => "restore.failed",
            EventType::TeamCreated => "team.created",
            EventType::TeamUpdated => "team.updated",
            EventType::TeamDeleted => "team.deleted",
            EventType::TeamMemberAdded => "team.member_added",
            EventType::TeamMemberRemoved => "team.member_removed",
            EventType::TeamProjectAssigned => "team.project_assigned",
            EventType::TeamProjectUnassigned => "team.project_unassigned",
        }
    }

    /// The event type named `name`, if Gantry has one.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The aggregate this event is about.
    pub const fn aggregate_type(self) -> &'static str {
        match self {
            EventType::OrgCreated | EventType::OrgUpdated | EventType::OrgDeleted => "org",
            EventType::MemberAdded | EventType::MemberRoleChanged | EventType::MemberRemoved => {
                "org"
            }
            EventType::WorkspaceRequested
            | EventType::WorkspaceDeletionRequested
            | EventType::WorkspaceProvisioning
            | EventType::WorkspaceReady
            | EventType::WorkspaceFailed
            | EventType::WorkspaceDeleted
            | EventType::WorkspaceDrifted => "workspace",
            EventType::ProjectCreated
            | EventType::ProjectUpdated
            | EventType::ProjectDeleted
            | EventType::ProjectGraphUpdated
            | EventType::ProjectReady
            | EventType::ProjectFailed => "project",
            EventType::CodegenRequested
            | EventType::CodegenStarted
            | EventType::CodegenSucceeded
            | EventType::CodegenFailed
            | EventType::CodegenCancelled => "codegen_job",
            EventType::ProbeRequested => "probe_batch",
            EventType::HealthDown | EventType::HealthDegraded | EventType::HealthUp => {
                "health_check"
            }
            EventType::IncidentOpened
            | EventType::IncidentAcknowledged
            | EventType::IncidentResolved => "incident",
            EventType::BackupRequested
            | EventType::BackupStarted
            | EventType::BackupSucceeded
            | EventType::BackupFailed
            | EventType::BackupExpired => "backup",
            EventType::RestoreRequested
            | EventType::RestoreStarted
            | EventType::RestoreSucceeded
            | EventType::RestoreFailed => "restore",
            EventType::TeamCreated
            | EventType::TeamUpdated
            | EventType::TeamDeleted
            | EventType::TeamMemberAdded
            | EventType::TeamMemberRemoved
            | EventType::TeamProjectAssigned
            | EventType::TeamProjectUnassigned => "team",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        EventType::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event type {name:?}")))
    }
}

/// The aggregate an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AggregateRef {
    /// `org`, `workspace`, `project`, …
    #[serde(rename = "type")]
    pub aggregate_type: String,
    /// Its id.
    pub id: Uuid,
}

/// The event envelope: the body of webhooks, SSE messages, stream entries and the events API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Event id; consumers deduplicate by it.
    pub id: Uuid,
    /// Event type, `aggregate.verb`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Organization the event belongs to.
    pub org_id: Uuid,
    /// What the event is about.
    pub aggregate: AggregateRef,
    /// When the change was committed (RFC 3339, UTC).
    pub occurred_at: DateTime<Utc>,
    /// Event-specific data.
    pub data: Value,
    /// The `X-Request-Id` of the API request that caused the event (directly, or through the
    /// job that recorded it); absent for events of scheduled work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl From<&StoredEvent> for Envelope {
    fn from(event: &StoredEvent) -> Self {
        Envelope {
            id: event.event_id,
            event_type: event.event_type.clone(),
            org_id: event.org_id,
            aggregate: AggregateRef {
                aggregate_type: event.aggregate_type.clone(),
                id: event.aggregate_id,
            },
            occurred_at: event.created_at,
            data: event.payload.clone(),
            request_id: event.request_id.clone(),
        }
    }
}

/// Records one event in the caller's transaction. Call it last, just before commit: on Postgres
/// it takes the outbox write lock, held until the transaction ends.
pub async fn record(
    db: &impl ConnectionTrait,
    event_type: EventType,
    org_id: Uuid,
    aggregate_id: Uuid,
    data: impl Serialize,
) -> Result<StoredEvent, DbErr> {
    let payload = serde_json::to_value(data).map_err(|e| DbErr::Json(e.to_string()))?;
    crate::audit::note_event(org_id, event_type.aggregate_type(), aggregate_id, &payload);
    let mut stored = outbox_store::insert_all(
        db,
        vec![NewEvent {
            event_id: Uuid::new_v4(),
            org_id,
            aggregate_type: event_type.aggregate_type(),
            aggregate_id,
            event_type: event_type.as_str(),
            payload,
        }],
    )
    .await?;
    stored
        .pop()
        .ok_or_else(|| DbErr::Custom("outbox insert returned nothing".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_well_formed() {
        let names: HashSet<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), EventType::ALL.len());
        for name in names {
            let (aggregate, verb) = name.split_once('.').expect("aggregate.verb");
            assert!(!aggregate.is_empty() && !verb.is_empty());
        }
    }

    #[test]
    fn names_round_trip() {
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
            let json = serde_json::to_value(event_type).expect("serializes");
            assert_eq!(json, event_type.as_str());
            let back: EventType = serde_json::from_value(json).expect("deserializes");
            assert_eq!(back, event_type);
        }
        assert_eq!(EventType::parse("bench.tick"), None);
        assert!(serde_json::from_value::<EventType>(serde_json::json!("org.nope")).is_err());
    }
}
