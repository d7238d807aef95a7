//! Who belongs to which organization, remembered between requests and forgotten through the
//! outbox: every change to an organization or a membership records an `org.*` / `member.*`
//! event, the event hub reads each one (on Postgres woken by `NOTIFY`, so within milliseconds
//! on every server process), and any such event forgets everything. The process that made the
//! change forgets at its commit, so its next request already sees it. A new writer of
//! organizations or memberships must do both: record such an event and call
//! [`AccessCache::invalidate`] after its commit.
//!
//! Entries carry the generation current when their query began: a change that lands while a
//! query runs makes the answer stale on arrival, never cached as current. While the hub cannot
//! read the outbox (or before its first read) nothing is remembered or answered from memory.

use crate::domain::Role;
use crate::store::orgs::Org;
use crate::store::outbox::StoredEvent;
use moka::sync::Cache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Entries per map; past it the least recently used are evicted.
const CAPACITY: u64 = 10_000;
/// Longest an entry is trusted even without an event: a bound for changes made outside the API
/// (an operator editing rows by hand), not the invalidation path.
pub const ACCESS_CACHE_TTL: Duration = Duration::from_secs(30);

/// A caller's standing in one organization.
#[derive(Debug, Clone)]
pub struct OrgStanding {
    /// The live organization.
    pub org: Org,
    /// The caller's membership role; `None` for a non-member.
    pub role: Option<Role>,
}

/// The live organizations of one caller with the caller's role in each.
pub type Memberships = Vec<(Org, Role)>;

struct Tagged<T> {
    generation: u64,
    value: T,
}

/// Remembered organization access and `/v1/me` memberships.
pub struct AccessCache {
    generation: AtomicU64,
    /// True while the event hub is reading the outbox.
    trusted: AtomicBool,
    standings: Cache<(Uuid, String), Arc<Tagged<OrgStanding>>>,
    memberships: Cache<String, Arc<Tagged<Memberships>>>,
}

impl Default for AccessCache {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(0),
            trusted: AtomicBool::new(false),
            standings: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ACCESS_CACHE_TTL)
                .build(),
            memberships: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ACCESS_CACHE_TTL)
                .build(),
        }
    }
}

/// Read before a query whose answer may be remembered; `None` when nothing may be.
#[derive(Debug, Clone, Copy)]
pub struct FillTicket(u64);

impl AccessCache {
    /// The ticket for a fill, taken before its query runs.
    pub fn ticket(&self) -> Option<FillTicket> {
        self.trusted
            .load(Ordering::Acquire)
            .then(|| FillTicket(self.generation.load(Ordering::Acquire)))
    }

    fn current<T: Clone>(&self, entry: Option<Arc<Tagged<T>>>) -> Option<T> {
        let entry = entry?;
        (self.trusted.load(Ordering::Acquire)
            && entry.generation == self.generation.load(Ordering::Acquire))
        .then(|| entry.value.clone())
    }

    /// `sub`'s remembered standing in `org_id`.
    pub fn standing(&self, org_id: Uuid, sub: &str) -> Option<OrgStanding> {
        self.current(self.standings.get(&(org_id, sub.to_owned())))
    }

    /// Remembers `sub`'s standing in `org_id`, read under `ticket`.
    pub fn remember_standing(&self, ticket: FillTicket, sub: &str, standing: &OrgStanding) {
        self.standings.insert(
            (standing.org.id, sub.to_owned()),
            Arc::new(Tagged {
                generation: ticket.0,
                value: standing.clone(),
            }),
        );
    }

    /// `sub`'s remembered live organizations with its role in each.
    pub fn memberships(&self, sub: &str) -> Option<Memberships> {
        self.current(self.memberships.get(sub))
    }

    /// Remembers `sub`'s organizations, read under `ticket`.
    pub fn remember_memberships(&self, ticket: FillTicket, sub: &str, orgs: &[(Org, Role)]) {
        self.memberships.insert(
            sub.to_owned(),
            Arc::new(Tagged {
                generation: ticket.0,
                value: orgs.to_vec(),
            }),
        );
    }

    /// Forgets everything (an organization or a membership changed).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.standings.invalidate_all();
        self.memberships.invalidate_all();
    }

    /// Forgets everything when `event` is about an organization or its members.
    pub fn observe(&self, event: &StoredEvent) {
        // `org.*` and `member.*` events share the organization's aggregate type.
        if event.aggregate_type == crate::outbox::EventType::OrgUpdated.aggregate_type() {
            self.invalidate();
        }
    }

    /// The event hub reads the outbox again (`true`) or cannot (`false`: changes made
    /// elsewhere would go unseen, so everything is forgotten and nothing is remembered).
    pub fn set_trusted(&self, trusted: bool) {
        if !trusted {
            self.invalidate();
        }
        self.trusted.store(trusted, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing() -> OrgStanding {
        let now = chrono::Utc::now();
        OrgStanding {
            org: Org {
                id: Uuid::now_v7(),
                name: "Acme".to_owned(),
                slug: "acme".to_owned(),
                created_at: now,
                updated_at: now,
                deleted_at: None,
            },
            role: Some(Role::Member),
        }
    }

    #[test]
    fn nothing_is_remembered_until_the_hub_reads() {
        let cache = AccessCache::default();
        assert!(cache.ticket().is_none());
        cache.set_trusted(true);
        let ticket = cache.ticket().unwrap_or(FillTicket(u64::MAX));
        let standing = standing();
        cache.remember_standing(ticket, "bob", &standing);
        assert!(cache.standing(standing.org.id, "bob").is_some());
        assert!(cache.standing(standing.org.id, "eve").is_none());
        cache.set_trusted(false);
        assert!(cache.standing(standing.org.id, "bob").is_none());
    }

    #[test]
    fn a_change_during_the_query_makes_its_answer_stale() {
        let cache = AccessCache::default();
        cache.set_trusted(true);
        let ticket = cache.ticket().unwrap_or(FillTicket(u64::MAX));
        // The change commits (and is seen) while the query is still running.
        cache.invalidate();
        let standing = standing();
        cache.remember_standing(ticket, "bob", &standing);
        assert!(cache.standing(standing.org.id, "bob").is_none());
        cache.remember_memberships(ticket, "bob", &[]);
        assert!(cache.memberships("bob").is_none());
    }
}
