//! The state the REST API shares between requests, below the API so guards can read it.

use crate::auth::guard::SeenUsers;
use crate::auth::TokenValidator;
use sea_orm::DatabaseConnection;

/// Shared state of the REST API.
pub struct AppState {
    /// The system of record.
    pub db: DatabaseConnection,
    /// Bearer-token validation.
    pub validator: TokenValidator,
    /// The job queues (admin views, probes).
    pub queues: crate::jobs::Queues,
    /// OIDC issuer put into generated kubeconfigs.
    pub kubeconfig_issuer: String,
    /// OIDC client id put into generated kubeconfigs.
    pub kubeconfig_client_id: String,
    /// Codegen settings the API checks at submit (LLM configured, Git URL schemes).
    pub codegen: crate::config::CodegenConfig,
    /// Where new backups are recorded as stored (`GANTRY_BACKUP_STORAGE`).
    pub backup_storage: crate::config::BackupStorage,
    /// Users already stored.
    pub users_seen: SeenUsers,
    /// The OpenAPI document, serialized once.
    pub openapi_json: String,
    /// Which addresses webhooks may reach.
    pub outbound: crate::webhooks::outbound::OutboundPolicy,
    /// Health-check settings (SMTP for email channels, notification timeout).
    pub health: crate::config::HealthConfig,
    /// Seals stored secrets (org secrets, webhook signing secrets).
    pub secrets: std::sync::Arc<crate::sealed::SecretsCipher>,
    /// Quotas and stream limits.
    pub limits: crate::config::LimitsConfig,
    /// The per-caller write rate limit.
    pub write_limiter: crate::auth::rate::WriteLimiter,
    /// Open event streams per caller, for the per-user stream quota.
    pub open_streams: crate::auth::streams::StreamCounter,
    /// Fans committed events out to the open streams.
    pub event_hub: crate::outbox::hub::EventHub,
    /// Organization access and memberships remembered between requests (forgotten through
    /// the outbox and at every local change).
    pub access_cache: std::sync::Arc<crate::auth::access_cache::AccessCache>,
    /// Remembered project list pages, forgotten through the outbox.
    pub project_lists: std::sync::Arc<crate::resources::list_cache::ProjectListCache>,
}
