//! Who may do what in an organization, as a request guard: [`OrgAccess<R>`] admits a caller
//! holding at least role `R` in the organization of the route's `<org_id>` segment. Outsiders
//! get 404 (no existence leak), a role that is too low 403, platform admins act as owners.
//! [`PlatformAdmin`] admits only holders of the platform admin realm role (the admin API).

use super::access_cache::OrgStanding;
use super::guard::{authenticate, documented_as_bearer, managed_state, Caller};
use crate::domain::Role;
use crate::error::{fail, ApiError};
use crate::store::{self, orgs::Org};
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use sea_orm::ConnectionTrait;
use std::marker::PhantomData;
use uuid::Uuid;

/// A role a route requires, as a type: the `R` of [`OrgAccess<R>`].
pub trait RequiredRole: Send + Sync + 'static {
    /// The least role admitted.
    const ROLE: Role;
}

/// Read-only access suffices.
pub struct Viewer;
/// Writing projects, graphs and jobs.
pub struct Member;
/// Managing members, workspaces, secrets and webhooks.
pub struct Admin;
/// Deleting the organization.
pub struct Owner;

impl RequiredRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl RequiredRole for Member {
    const ROLE: Role = Role::Member;
}
impl RequiredRole for Admin {
    const ROLE: Role = Role::Admin;
}
impl RequiredRole for Owner {
    const ROLE: Role = Role::Owner;
}

/// The caller's standing in the route's organization, holding at least role `R`.
#[derive(Debug)]
pub struct OrgAccess<R> {
    /// Who is asking.
    pub caller: Caller,
    /// The organization (live).
    pub org: Org,
    /// The caller's effective role (platform admins act as owners).
    pub role: Role,
    required: PhantomData<R>,
}

/// Index of `<org_id>` among the path segments of every `/v1/orgs/<org_id>/…` route (mounted at
/// `/`).
const ORG_ID_SEGMENT: usize = 2;

impl<R: RequiredRole> OrgAccess<R> {
    /// Loads the organization and checks `caller` holds at least `R` in it.
    pub async fn check(
        db: &impl ConnectionTrait,
        caller: Caller,
        org_id: Uuid,
    ) -> Result<Self, ApiError> {
        let standing = Self::standing(db, org_id, &caller.sub).await?;
        Self::admit_as(caller, standing.org, standing.role)
    }

    /// The live organization and `sub`'s role in it, in one query (404 when there is no such
    /// organization).
    async fn standing(
        db: &impl ConnectionTrait,
        org_id: Uuid,
        sub: &str,
    ) -> Result<OrgStanding, ApiError> {
        let (org, membership) = store::orgs::find_live_with_membership(db, org_id, sub)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(OrgStanding {
            org,
            role: membership.map(|m| m.role()),
        })
    }

    /// [`OrgAccess::check`] for the request guard: answered from the access cache when it can
    /// be, remembered when it was not. (Checks inside a write transaction always read.)
    async fn check_remembered(
        state: &crate::state::AppState,
        caller: Caller,
        org_id: Uuid,
    ) -> Result<Self, ApiError> {
        let cache = &state.access_cache;
        if let Some(standing) = cache.standing(org_id, &caller.sub) {
            return Self::admit_as(caller, standing.org, standing.role);
        }
        let ticket = cache.ticket();
        let standing = Self::standing(&state.db, org_id, &caller.sub).await?;
        if let Some(ticket) = ticket {
            cache.remember_standing(ticket, &caller.sub, &standing);
        }
        Self::admit_as(caller, standing.org, standing.role)
    }

    /// Checks again inside `txn` with the organization row locked until it ends, for writes
    /// that must not race with membership changes (the last-owner rule).
    pub async fn lock(&self, txn: &impl ConnectionTrait) -> Result<Self, ApiError> {
        let org = store::orgs::find_live_for_update(txn, self.org.id)
            .await?
            .ok_or(ApiError::NotFound)?;
        Self::admit(txn, self.caller.clone(), org).await
    }

    /// Checks again inside `txn` (the guard read the organization before the transaction
    /// began): a write must not land in an organization deleted, or left, in between.
    pub async fn recheck(&self, txn: &impl ConnectionTrait) -> Result<Self, ApiError> {
        Self::check(txn, self.caller.clone(), self.org.id).await
    }

    /// The caller's effective role on a project of this organization: the highest of its org
    /// role and the roles of its teams on the project.
    pub async fn role_on_project(
        &self,
        db: &impl ConnectionTrait,
        project_id: Uuid,
    ) -> Result<Role, ApiError> {
        if self.caller.service_account.is_some() || self.role == Role::Owner {
            return Ok(self.role);
        }
        let team_role = store::teams::role_on_project(db, project_id, &self.caller.sub).await?;
        Ok(team_role.map_or(self.role, |team| team.max(self.role)))
    }

    /// 403 unless the caller's effective role on the project allows `required` (graph writes
    /// and codegen jobs, which a team role on the project may grant).
    pub async fn require_on_project(
        &self,
        db: &impl ConnectionTrait,
        project_id: Uuid,
        required: Role,
    ) -> Result<(), ApiError> {
        if self.role.allows(required) {
            return Ok(());
        }
        require(self.role_on_project(db, project_id).await?, required)
    }

    /// 403 unless the caller's role also allows `required` (for a role that depends on the
    /// request, such as removing someone else rather than leaving).
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        require(self.role, required)
    }

    async fn admit(db: &impl ConnectionTrait, caller: Caller, org: Org) -> Result<Self, ApiError> {
        let member_role = store::members::find(db, org.id, &caller.sub)
            .await?
            .map(|m| m.role());
        Self::admit_as(caller, org, member_role)
    }

    /// Admits `caller`, holding `member_role` in `org` (if a member), when that suffices. A
    /// service account holds its own role in its own organization and is unknown elsewhere.
    fn admit_as(caller: Caller, org: Org, member_role: Option<Role>) -> Result<Self, ApiError> {
        let role = match (
            &caller.service_account,
            member_role,
            caller.is_platform_admin,
        ) {
            (Some(account), ..) if account.org_id == org.id => account.role,
            (Some(_), ..) => return Err(ApiError::NotFound),
            (None, _, true) => Role::Owner,
            (None, Some(role), false) => role,
            (None, None, false) => return Err(ApiError::NotFound),
        };
        require(role, R::ROLE)?;
        Ok(Self {
            caller,
            org,
            role,
            required: PhantomData,
        })
    }
}

fn require(role: Role, required: Role) -> Result<(), ApiError> {
    if role.allows(required) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this action needs the {required} role or higher; you are {role}"
        )))
    }
}

#[rocket::async_trait]
impl<'r, R: RequiredRole> FromRequest<'r> for OrgAccess<R> {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        // Authentication first: a bad token is 401 whatever the organization.
        let caller = rocket::outcome::try_outcome!(authenticate(req).await);
        if req.routed_segment(0) != Some("v1") || req.routed_segment(1) != Some("orgs") {
            return fail(
                req,
                ApiError::Internal(anyhow::anyhow!(
                    "OrgAccess on a route outside /v1/orgs/<org_id>"
                )),
            );
        }
        // A malformed id forwards with 422, as Rocket's own parameter guard does.
        let Some(Ok(org_id)) = req.param::<Uuid>(ORG_ID_SEGMENT) else {
            return Outcome::Forward(Status::UnprocessableEntity);
        };
        let checked = match managed_state(req) {
            Ok(state) => Self::check_remembered(state, caller, org_id).await,
            Err(err) => Err(err),
        };
        match checked {
            Ok(access) => Outcome::Success(access),
            Err(err) => fail(req, err),
        }
    }
}

documented_as_bearer!(OrgAccess<R> where R: RequiredRole);

/// A caller holding the platform admin realm role ([`super::ADMIN_ROLE`]); anyone else gets
/// 403. The guard of every `/v1/admin/*` route.
#[derive(Debug)]
pub struct PlatformAdmin {
    /// Who is asking.
    pub caller: Caller,
}

impl PlatformAdmin {
    /// Admits `caller` if it holds the platform admin role.
    pub fn check(caller: Caller) -> Result<Self, ApiError> {
        if caller.is_platform_admin {
            Ok(Self { caller })
        } else {
            Err(ApiError::Forbidden(format!(
                "needs the {} realm role",
                super::ADMIN_ROLE
            )))
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PlatformAdmin {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        // Authentication first: a bad token is 401, a good one without the role 403.
        let caller = rocket::outcome::try_outcome!(authenticate(req).await);
        match Self::check(caller) {
            Ok(admin) => Outcome::Success(admin),
            Err(err) => fail(req, err),
        }
    }
}

documented_as_bearer!(PlatformAdmin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_too_low_is_refused_naming_both_roles() {
        let Err(err) = require(Role::Viewer, Role::Admin) else {
            panic!("a viewer must not pass an admin check");
        };
        assert_eq!(err.status(), Status::Forbidden);
        assert_eq!(
            err.to_string(),
            "forbidden: this action needs the admin role or higher; you are viewer"
        );
    }

    #[test]
    fn an_equal_or_higher_role_is_admitted() {
        assert!(require(Role::Member, Role::Member).is_ok());
        assert!(require(Role::Owner, Role::Admin).is_ok());
    }

    #[test]
    fn each_marker_names_its_role() {
        assert_eq!(Viewer::ROLE, Role::Viewer);
        assert_eq!(Member::ROLE, Role::Member);
        assert_eq!(Admin::ROLE, Role::Admin);
        assert_eq!(Owner::ROLE, Role::Owner);
    }
}
