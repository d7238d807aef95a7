//! The store's one keyset-paging helper, walked page by page in both directions on both
//! backends: every row exactly once, in key order, and `more` false only on the last page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, TestDatabase};
use gantry::store::{self, PageRequest};

/// Walks every page of `list` with page size 2; returns the keys in the order seen.
async fn walk<T, K: Clone, Fut>(
    key: impl Fn(&T) -> K,
    mut list: impl FnMut(PageRequest<K>) -> Fut,
) -> Vec<K>
where
    Fut: std::future::Future<Output = Result<(Vec<T>, bool), sea_orm::DbErr>>,
{
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (rows, more) = list(PageRequest { limit: 2, after }).await.expect("page");
        assert!(rows.len() <= 2, "a page holds at most `limit` rows");
        seen.extend(rows.iter().map(&key));
        if !more {
            return seen;
        }
        assert_eq!(rows.len(), 2, "only the last page may be short");
        after = rows.last().map(&key);
    }
}

async fn pages_in_both_directions(backend: Backend) {
    let Some((_database, url)) = TestDatabase::create(backend, "pages_in_both_directions").await
    else {
        return;
    };
    let db = store::connect(&url).await.expect("connect");
    store::migrate(&db).await.expect("migrate");

    // Ascending (organizations by id): five rows in three pages, oldest first.
    let mut org_ids = Vec::new();
    for i in 0..5 {
        let org = store::orgs::insert(&db, &format!("org {i}"), &format!("org-{i}"))
            .await
            .expect("insert org");
        org_ids.push(org.id);
    }
    let seen = walk(
        |o: &store::orgs::Org| o.id,
        |page| {
            let db = db.clone();
            async move { store::orgs::list_all(&db, &page).await }
        },
    )
    .await;
    assert_eq!(seen, org_ids);

    // Descending (a webhook's deliveries, newest first): the reverse of insertion order.
    let hook = store::webhooks::insert(
        &db,
        org_ids[0],
        "https://example.test/hook",
        &["org.created".to_owned()],
        None,
        &gantry::sealed::SecretsCipher::new([7; 32], None),
        "whsec_test",
    )
    .await
    .expect("insert webhook");
    for _ in 0..5 {
        store::webhooks::insert_delivery(&db, &hook, uuid::Uuid::now_v7(), "org.created")
            .await
            .expect("insert delivery");
    }
    let seen = walk(
        |d: &store::webhooks::Delivery| d.id,
        |page| {
            let db = db.clone();
            async move { store::webhooks::list_deliveries(&db, hook.id, &page).await }
        },
    )
    .await;
    assert_eq!(seen.len(), 5, "{seen:?}");
    // Strictly newest first: in order, and no row twice (so all five, each once).
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
}

on_each_backend!(pages_in_both_directions);
