//! Newtypes and pure rules: names, roles, graphs. No I/O lives here.

pub mod graph;
pub mod names;
pub mod role;

pub use names::{DisplayName, DnsLabel};
pub use role::Role;
