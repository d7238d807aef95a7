//! Gantry: the control-plane backend of a multi-tenant Kubernetes platform — a REST API and
//! background workers in one binary.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod bench_health;
pub mod bench_sse;
pub mod config;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod outbox;
pub mod resources;
pub mod sealed;
pub mod startup;
pub mod state;
pub mod store;
pub mod webhooks;
pub mod workers;

/// Installs the process-wide rustls crypto provider (sqlx brings `ring`, reqwest and
/// jsonwebtoken bring `aws-lc-rs`; rustls refuses to guess). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
