//! A membership as the API answers it and its events carry it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::Role;
use crate::store::members::Membership;

/// A member of an organization.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MemberView {
    /// Organization id.
    pub org_id: Uuid,
    /// Keycloak `sub` of the member.
    pub user_sub: String,
    /// Role in the organization.
    pub role: Role,
    /// When the member was added.
    pub created_at: DateTime<Utc>,
    /// Last role change.
    pub updated_at: DateTime<Utc>,
}

impl From<Membership> for MemberView {
    fn from(m: Membership) -> Self {
        Self {
            role: m.role(),
            org_id: m.org_id,
            user_sub: m.user_sub,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}
