//! The audit trail as the API layer uses it: the request scope ([`crate::store::scope`]: who
//! is asking, what the write noted) and the audit vocabulary ([`crate::domain::audit`]). One
//! import for handlers and the server's route wrapper.

pub use crate::domain::audit::{describe, redact, Actor, Described};
pub use crate::store::scope::*;
