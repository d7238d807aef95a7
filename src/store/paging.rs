//! Keyset pagination shared by every store list: one page of rows strictly after a key, in key
//! order, fetched with `limit + 1` so the caller learns whether another page follows.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Select, Value,
};

/// One page request: at most `limit` rows strictly after `after` in key order.
#[derive(Debug, Clone)]
pub struct PageRequest<K> {
    /// Page size (1..=200).
    pub limit: u64,
    /// The last key of the previous page.
    pub after: Option<K>,
}

/// The direction a list walks its key column in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// Smallest key first; the next page holds keys greater than the cursor.
    Ascending,
    /// Largest key first (newest first for time-ordered ids); the next page holds smaller keys.
    Descending,
}

/// One page of rows and whether more follow (the API turns the last row's key into the cursor).
pub type Page<T> = (Vec<T>, bool);

/// Runs `query` as one keyset page over `key`: rows after `page.after` in `order`, at most
/// `page.limit` of them, and whether another page follows.
pub async fn keyset<E, K>(
    db: &impl ConnectionTrait,
    query: Select<E>,
    key: E::Column,
    order: KeyOrder,
    page: &PageRequest<K>,
) -> Result<Page<E::Model>, DbErr>
where
    E: EntityTrait,
    K: Clone + Into<Value>,
{
    keyset_into::<E, E::Model, K>(db, query, key, order, page).await
}

/// Like [`keyset`], for a query that selects only some columns into the model `M`.
pub async fn keyset_into<E, M, K>(
    db: &impl ConnectionTrait,
    query: Select<E>,
    key: E::Column,
    order: KeyOrder,
    page: &PageRequest<K>,
) -> Result<Page<M>, DbErr>
where
    E: EntityTrait,
    M: FromQueryResult,
    K: Clone + Into<Value>,
{
    let query = match (&page.after, order) {
        (None, _) => query,
        (Some(after), KeyOrder::Ascending) => query.filter(key.gt(after.clone())),
        (Some(after), KeyOrder::Descending) => query.filter(key.lt(after.clone())),
    };
    let query = match order {
        KeyOrder::Ascending => query.order_by_asc(key),
        KeyOrder::Descending => query.order_by_desc(key),
    };
    let rows = query
        .limit(page.limit + 1)
        .into_model::<M>()
        .all(db)
        .await?;
    Ok(split_page(rows, page.limit))
}

/// Splits `rows` (fetched with `limit + 1`) into a page and whether more follow.
pub fn split_page<T>(mut rows: Vec<T>, limit: u64) -> Page<T> {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_page_reports_whether_more_rows_follow() {
        assert_eq!(split_page(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(split_page(vec![1, 2], 2), (vec![1, 2], false));
        assert_eq!(split_page(Vec::<u8>::new(), 2), (vec![], false));
    }
}
