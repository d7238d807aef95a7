//! Conversions the templates make while writing a field.
//!
//! The value rules (names, quantities, paths, schedules…) are the graph's own, in
//! [`crate::domain::graph`]: `validate` applies them before a graph is stored, and the templates
//! call the same functions for their defensive checks, so the two cannot disagree.

/// A value that must fit the `int32` fields of the Kubernetes API.
pub(super) fn int32(value: u32) -> Result<i32, String> {
    i32::try_from(value).map_err(|_| format!("must be at most {}", i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int32_bounds() {
        assert_eq!(int32(0), Ok(0));
        assert_eq!(int32(2_147_483_647), Ok(i32::MAX));
        assert!(int32(2_147_483_648).is_err());
    }
}
