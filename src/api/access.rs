//! Who may do what in an organization: 404 for outsiders (no existence leak), 403 for a role
//! that is too low, everything for platform admins.

use crate::auth::Caller;
use crate::domain::Role;
use crate::error::ApiError;
use crate::store::{self, orgs::Org};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

/// The caller's standing in one organization.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    /// The organization (live).
    pub org: Org,
    /// The caller's effective role (platform admins act as owners).
    pub role: Role,
    /// The caller's own role, if a member.
    pub member_role: Option<Role>,
}

/// Loads the organization and checks the caller holds at least `required` in it.
pub async fn org_access(
    db: &impl ConnectionTrait,
    caller: &Caller,
    org_id: Uuid,
    required: Role,
) -> Result<OrgAccess, ApiError> {
    let org = store::orgs::find_live(db, org_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access_to(db, caller, org, required).await
}

/// Like [`org_access`], locking the organization row for the rest of the transaction.
pub async fn org_access_for_update(
    db: &impl ConnectionTrait,
    caller: &Caller,
    org_id: Uuid,
    required: Role,
) -> Result<OrgAccess, ApiError> {
    let org = store::orgs::find_live_for_update(db, org_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access_to(db, caller, org, required).await
}

async fn access_to(
    db: &impl ConnectionTrait,
    caller: &Caller,
    org: Org,
    required: Role,
) -> Result<OrgAccess, ApiError> {
    let member_role = store::members::find(db, org.id, &caller.sub)
        .await?
        .map(|m| m.role());
    let role = match (member_role, caller.is_platform_admin) {
        (_, true) => Role::Owner,
        (Some(role), false) => role,
        (None, false) => return Err(ApiError::NotFound),
    };
    if !role.allows(required) {
        return Err(ApiError::Forbidden(format!(
            "this action needs the {required} role or higher; you are {role}"
        )));
    }
    Ok(OrgAccess {
        org,
        role,
        member_role,
    })
}
