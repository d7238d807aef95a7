//! Kubernetes' own value rules, which the graph and the drivers share: object and variable
//! names, quantities and CronJob schedules.

pub mod cron;
pub mod names;
pub mod quantity;
