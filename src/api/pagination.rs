//! Cursor pagination: `?limit=` (default 50, max 200) and an opaque `?cursor=`.

pub use super::query::{Cursor, CursorKey};
pub use super::query::{PageLimit, Strict};
use crate::error::ApiError;
use crate::store::PageRequest;
use schemars::JsonSchema;
use serde::Serialize;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest page size.
pub const MAX_LIMIT: u64 = 200;

/// One page of a list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `?cursor=` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from rows, mapping each and encoding the last key as the cursor.
    pub fn from_rows<R, K: ToString>(
        rows: Vec<R>,
        more: bool,
        key: impl Fn(&R) -> K,
        map: impl Fn(R) -> T,
    ) -> Self {
        let next_cursor = if more {
            rows.last().map(|r| encode_cursor(&key(r).to_string()))
        } else {
            None
        };
        Self {
            items: rows.into_iter().map(map).collect(),
            next_cursor,
        }
    }
}

/// Encodes a key as the `next_cursor` value: the key as text, which [`Cursor`] parses back.
pub fn encode_cursor(key: &str) -> String {
    key.to_owned()
}

/// The `?limit=` parameter of every list.
pub type Limit = Strict<PageLimit>;

/// Parses `?limit=`: [`DEFAULT_LIMIT`] when absent, 400 when not a whole number in
/// `1..=MAX_LIMIT`.
pub fn parse_limit(limit: Limit) -> Result<u64, ApiError> {
    Ok(limit.get("limit")?.map_or(DEFAULT_LIMIT, |l| l.0))
}

/// Parses `?limit=` and `?cursor=` into a page request over keys of type `K`.
pub fn page_request<K: CursorKey>(
    limit: Limit,
    cursor: Strict<Cursor<K>>,
) -> Result<PageRequest<K>, ApiError> {
    let limit = parse_limit(limit)?;
    let after = cursor.get("cursor")?.map(|c| c.0);
    Ok(PageRequest { limit, after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors() {
        let page: PageRequest<i32> =
            page_request(Strict::absent(), Strict::absent()).expect("defaults");
        assert_eq!(page.limit, DEFAULT_LIMIT);
        let cursor = encode_cursor("42");
        let page: PageRequest<i32> = page_request(
            Strict::of(PageLimit(200)),
            Strict::of(Cursor(cursor.parse().expect("a number"))),
        )
        .expect("valid");
        assert_eq!(page.after, Some(42));
    }
}
