//! `teams`, `team_members` and `project_teams`: groups of an organization's members, and the
//! role each team holds on the projects assigned to it.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use crate::domain::Role;
use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect, Set};

/// The `teams` table.
pub mod team_entity {
    use sea_orm::entity::prelude::*;

    /// One team.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "teams")]
    pub struct Model {
        /// Team id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Its organization.
        pub org_id: Uuid,
        /// DNS label, unique in the organization.
        pub name: String,
        /// Free text.
        pub description: Option<String>,
        /// When it was created.
        pub created_at: DateTimeUtc,
        /// When it last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `team_members` table.
pub mod member_entity {
    use sea_orm::entity::prelude::*;

    /// One user in one team.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "team_members")]
    pub struct Model {
        /// The team.
        #[sea_orm(primary_key, auto_increment = false)]
        pub team_id: Uuid,
        /// The member's `sub`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_sub: String,
        /// The team's organization.
        pub org_id: Uuid,
        /// When the user joined the team.
        pub created_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `project_teams` table.
pub mod grant_entity {
    use sea_orm::entity::prelude::*;

    /// A team's role on a project.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "project_teams")]
    pub struct Model {
        /// The project.
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: Uuid,
        /// The team.
        #[sea_orm(primary_key, auto_increment = false)]
        pub team_id: Uuid,
        /// Their organization.
        pub org_id: Uuid,
        /// `viewer`, `member` or `admin`.
        pub role: String,
        /// When the team was assigned.
        pub created_at: DateTimeUtc,
        /// When the role last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use grant_entity::Model as ProjectGrant;
pub use team_entity::Model as Team;

impl ProjectGrant {
    /// The parsed role (an unknown stored value counts as viewer).
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or(Role::Viewer)
    }
}

/// Creates a team.
pub async fn insert(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
    description: Option<String>,
) -> Result<Team, DbErr> {
    let now = super::now();
    team_entity::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(org_id),
        name: Set(name.to_owned()),
        description: Set(description),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// The team `team_id` of `org_id`.
pub async fn find(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    team_id: Uuid,
) -> Result<Option<Team>, DbErr> {
    team_entity::Entity::find_by_id(team_id)
        .filter(team_entity::Column::OrgId.eq(org_id))
        .one(db)
        .await
}

/// A page of the organization's teams, by name.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<String>,
) -> Result<Page<Team>, DbErr> {
    let query = team_entity::Entity::find().filter(team_entity::Column::OrgId.eq(org_id));
    keyset(
        db,
        query,
        team_entity::Column::Name,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// Changes a team's name and/or description.
pub async fn update(
    db: &impl ConnectionTrait,
    team: Team,
    name: Option<String>,
    description: Option<Option<String>>,
) -> Result<Team, DbErr> {
    let mut row: team_entity::ActiveModel = team.into();
    if let Some(name) = name {
        row.name = Set(name);
    }
    if let Some(description) = description {
        row.description = Set(description);
    }
    row.updated_at = Set(super::now());
    row.update(db).await
}

/// Deletes a team with its memberships and project grants; returns the projects it had.
pub async fn delete(db: &impl ConnectionTrait, team: &Team) -> Result<Vec<Uuid>, DbErr> {
    let projects = grant_entity::Entity::find()
        .filter(grant_entity::Column::TeamId.eq(team.id))
        .all(db)
        .await?
        .into_iter()
        .map(|g| g.project_id)
        .collect();
    grant_entity::Entity::delete_many()
        .filter(grant_entity::Column::TeamId.eq(team.id))
        .exec(db)
        .await?;
    member_entity::Entity::delete_many()
        .filter(member_entity::Column::TeamId.eq(team.id))
        .exec(db)
        .await?;
    team_entity::Entity::delete_by_id(team.id).exec(db).await?;
    Ok(projects)
}

/// The `sub`s in a team, sorted.
pub async fn members(db: &impl ConnectionTrait, team_id: Uuid) -> Result<Vec<String>, DbErr> {
    Ok(member_entity::Entity::find()
        .filter(member_entity::Column::TeamId.eq(team_id))
        .order_by_asc(member_entity::Column::UserSub)
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.user_sub)
        .collect())
}

/// Puts `sub` in the team; false when it was already there.
pub async fn add_member(db: &impl ConnectionTrait, team: &Team, sub: &str) -> Result<bool, DbErr> {
    if member_entity::Entity::find_by_id((team.id, sub.to_owned()))
        .one(db)
        .await?
        .is_some()
    {
        return Ok(false);
    }
    member_entity::ActiveModel {
        team_id: Set(team.id),
        user_sub: Set(sub.to_owned()),
        org_id: Set(team.org_id),
        created_at: Set(super::now()),
    }
    .insert(db)
    .await?;
    Ok(true)
}

/// Takes `sub` out of the team; false when it was not in it.
pub async fn remove_member(
    db: &impl ConnectionTrait,
    team_id: Uuid,
    sub: &str,
) -> Result<bool, DbErr> {
    let result = member_entity::Entity::delete_by_id((team_id, sub.to_owned()))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Takes `sub` out of every team of the organization (it left the organization).
pub async fn remove_from_all(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    sub: &str,
) -> Result<(), DbErr> {
    member_entity::Entity::delete_many()
        .filter(member_entity::Column::OrgId.eq(org_id))
        .filter(member_entity::Column::UserSub.eq(sub))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives `team` `role` on the project (or changes its role); returns the grant.
pub async fn assign(
    db: &impl ConnectionTrait,
    team: &Team,
    project_id: Uuid,
    role: Role,
) -> Result<ProjectGrant, DbErr> {
    let now = super::now();
    match grant_entity::Entity::find_by_id((project_id, team.id))
        .one(db)
        .await?
    {
        Some(grant) => {
            let mut row: grant_entity::ActiveModel = grant.into();
            row.role = Set(role.as_str().to_owned());
            row.updated_at = Set(now);
            row.update(db).await
        }
        None => {
            grant_entity::ActiveModel {
                project_id: Set(project_id),
                team_id: Set(team.id),
                org_id: Set(team.org_id),
                role: Set(role.as_str().to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(db)
            .await
        }
    }
}

/// Removes a team from a project; false when it was not assigned.
pub async fn unassign(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    team_id: Uuid,
) -> Result<bool, DbErr> {
    let result = grant_entity::Entity::delete_by_id((project_id, team_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// The teams assigned to a project with their roles, by team name.
pub async fn grants_on(
    db: &impl ConnectionTrait,
    project_id: Uuid,
) -> Result<Vec<(Team, Role)>, DbErr> {
    let grants = grant_entity::Entity::find()
        .filter(grant_entity::Column::ProjectId.eq(project_id))
        .all(db)
        .await?;
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    let teams = team_entity::Entity::find()
        .filter(team_entity::Column::Id.is_in(grants.iter().map(|g| g.team_id)))
        .order_by_asc(team_entity::Column::Name)
        .all(db)
        .await?;
    Ok(teams
        .into_iter()
        .filter_map(|team| {
            let role = grants.iter().find(|g| g.team_id == team.id)?.role();
            Some((team, role))
        })
        .collect())
}

/// The highest role `sub` holds on the project through its teams.
pub async fn role_on_project(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    sub: &str,
) -> Result<Option<Role>, DbErr> {
    let team_ids: Vec<Uuid> = member_entity::Entity::find()
        .select_only()
        .column(member_entity::Column::TeamId)
        .filter(member_entity::Column::UserSub.eq(sub))
        .into_tuple()
        .all(db)
        .await?;
    if team_ids.is_empty() {
        return Ok(None);
    }
    let roles: Vec<String> = grant_entity::Entity::find()
        .select_only()
        .column(grant_entity::Column::Role)
        .filter(grant_entity::Column::ProjectId.eq(project_id))
        .filter(grant_entity::Column::TeamId.is_in(team_ids))
        .into_tuple()
        .all(db)
        .await?;
    Ok(roles.iter().filter_map(|r| r.parse::<Role>().ok()).max())
}
