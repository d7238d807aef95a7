//! An organization as the API answers it and its events carry it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

use crate::store::orgs::Org;

/// An organization.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OrgView {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Unique DNS-1123 label.
    pub slug: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Org> for OrgView {
    fn from(org: Org) -> Self {
        Self {
            id: org.id,
            name: org.name,
            slug: org.slug,
            created_at: org.created_at,
            updated_at: org.updated_at,
        }
    }
}
