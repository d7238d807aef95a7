//! Resource representations shared by the REST API, the event payloads and the SDK: one module
//! per resource, below the API and the workers so both can use them.

pub mod alerts;
pub mod backup;
pub mod codegen;
pub mod health;
pub mod list_cache;
pub mod member;
pub mod org;
pub mod probe;
pub mod project;
pub mod status;
pub mod workspace;
