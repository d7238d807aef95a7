//! Newtypes and pure rules: names, roles, graphs, Kubernetes values. No I/O lives here.

pub mod audit;
pub mod backup;
pub mod git_target;
pub mod graph;
pub mod health;
pub mod k8s;
pub mod names;
pub mod role;
pub mod schema;

pub use names::{DisplayName, DnsLabel};
pub use role::Role;
