//! Project list pages, remembered as the JSON they were answered with and forgotten through the
//! outbox, per organization. Every change to a project records a `project.*` event (the
//! provisioner's status changes included) and the workspace cascade records `workspace.*`; the
//! event hub reads each one (on Postgres woken by `NOTIFY`), and such an event forgets the
//! organization's pages. The server process that made the change forgets them before its
//! answer leaves (the route wrapper, from the events the request recorded), so a client reads
//! its own writes.
//!
//! As in the access cache, entries carry the organization's generation from before their query
//! began, so an answer read while a change landed is never remembered as current, and nothing
//! is remembered or answered while the hub cannot read the outbox.

use crate::store::outbox::StoredEvent;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Pages remembered; past it the least recently used are evicted.
const CAPACITY: u64 = 10_000;
/// Longest a page is trusted without an event: a bound for rows changed outside Gantry.
pub const LIST_CACHE_TTL: Duration = Duration::from_secs(30);

/// What a page was asked for: organization, workspace filter, page size and cursor.
pub type ListKey = (Uuid, Option<Uuid>, u64, Option<Uuid>);

struct Remembered {
    epoch: u64,
    generation: u64,
    json: Arc<str>,
}

/// Remembered project list pages.
pub struct ProjectListCache {
    /// True while the event hub is reading the outbox.
    trusted: AtomicBool,
    /// Bumped when everything is forgotten (the hub stopped reading).
    epoch: AtomicU64,
    /// Per organization, bumped by each change to its projects.
    generations: Mutex<HashMap<Uuid, u64>>,
    pages: Cache<ListKey, Arc<Remembered>>,
}

impl Default for ProjectListCache {
    fn default() -> Self {
        Self {
            trusted: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            generations: Mutex::default(),
            pages: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(LIST_CACHE_TTL)
                .build(),
        }
    }
}

/// Taken before a query whose answer may be remembered; `None` when nothing may be.
#[derive(Debug, Clone, Copy)]
pub struct ListTicket {
    epoch: u64,
    generation: u64,
}

/// True for events that change what a project list shows.
fn changes_lists(event: &StoredEvent) -> bool {
    let project = crate::outbox::EventType::ProjectUpdated.aggregate_type();
    let workspace = crate::outbox::EventType::WorkspaceDeleted.aggregate_type();
    event.aggregate_type == project || event.aggregate_type == workspace
}

impl ProjectListCache {
    fn generation(&self, org_id: Uuid) -> u64 {
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        generations.get(&org_id).copied().unwrap_or(0)
    }

    /// The ticket for a fill of `org_id`'s pages, taken before the query runs.
    pub fn ticket(&self, org_id: Uuid) -> Option<ListTicket> {
        self.trusted.load(Ordering::Acquire).then(|| ListTicket {
            epoch: self.epoch.load(Ordering::Acquire),
            generation: self.generation(org_id),
        })
    }

    /// The remembered JSON of the page `key`, if still current.
    pub fn page(&self, key: &ListKey) -> Option<Arc<str>> {
        let entry = self.pages.get(key)?;
        (self.trusted.load(Ordering::Acquire)
            && entry.epoch == self.epoch.load(Ordering::Acquire)
            && entry.generation == self.generation(key.0))
        .then(|| entry.json.clone())
    }

    /// Remembers the JSON of page `key`, read under `ticket`.
    pub fn remember(&self, ticket: ListTicket, key: ListKey, json: Arc<str>) {
        self.pages.insert(
            key,
            Arc::new(Remembered {
                epoch: ticket.epoch,
                generation: ticket.generation,
                json,
            }),
        );
    }

    /// Forgets `org_id`'s pages.
    pub fn invalidate_org(&self, org_id: Uuid) {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        *generations.entry(org_id).or_insert(0) += 1;
    }

    /// Forgets the pages of `event`'s organization when it changes a project list.
    pub fn observe(&self, event: &StoredEvent) {
        if changes_lists(event) {
            self.invalidate_org(event.org_id);
        }
    }

    /// Forgets the pages of every organization a request's events (`(aggregate type, org)`)
    /// changed, once they are committed.
    pub fn forget_changed(&self, touched: &[(String, Uuid)]) {
        let project = crate::outbox::EventType::ProjectUpdated.aggregate_type();
        let workspace = crate::outbox::EventType::WorkspaceDeleted.aggregate_type();
        for (aggregate_type, org_id) in touched {
            if aggregate_type == project || aggregate_type == workspace {
                self.invalidate_org(*org_id);
            }
        }
    }

    /// The event hub reads the outbox again (`true`) or cannot (`false`: forget everything).
    pub fn set_trusted(&self, trusted: bool) {
        if !trusted {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.pages.invalidate_all();
        }
        self.trusted.store(trusted, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(org: Uuid) -> ListKey {
        (org, None, 50, None)
    }

    #[test]
    fn nothing_is_remembered_until_trusted() {
        let cache = ProjectListCache::default();
        let org = Uuid::now_v7();
        assert!(cache.ticket(org).is_none());
        cache.set_trusted(true);
        let ticket = cache.ticket(org).expect("trusted");
        cache.remember(ticket, key(org), Arc::from("[]"));
        assert_eq!(cache.page(&key(org)).as_deref(), Some("[]"));
        cache.set_trusted(false);
        assert!(cache.page(&key(org)).is_none());
    }

    #[test]
    fn a_change_during_the_query_is_never_remembered_as_current() {
        let cache = ProjectListCache::default();
        cache.set_trusted(true);
        let (org, other) = (Uuid::now_v7(), Uuid::now_v7());
        let ticket = cache.ticket(org).expect("trusted");
        let other_ticket = cache.ticket(other).expect("trusted");
        cache.invalidate_org(org);
        cache.remember(ticket, key(org), Arc::from("stale"));
        cache.remember(other_ticket, key(other), Arc::from("fresh"));
        assert!(cache.page(&key(org)).is_none());
        // Another organization's pages are untouched.
        assert_eq!(cache.page(&key(other)).as_deref(), Some("fresh"));
        cache.forget_changed(&[("project".to_owned(), other)]);
        assert!(cache.page(&key(other)).is_none());
    }
}
