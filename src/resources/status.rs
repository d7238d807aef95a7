//! The organization's status overview: every check's status, uptime over 24 h / 7 d / 30 d
//! (raw results plus hourly rollups), latency percentiles over 24 h, and open incidents.

use super::alerts::{window_active, window_covers};
use super::health::IncidentView;
use crate::store;
use chrono::Duration;
use schemars::JsonSchema;
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;
use uuid::Uuid;

/// Uptime percentages (`null` when there were no runs in the period).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Uptime {
    /// Over the last 24 hours.
    #[serde(rename = "24h")]
    pub day: Option<f64>,
    /// Over the last 7 days.
    #[serde(rename = "7d")]
    pub week: Option<f64>,
    /// Over the last 30 days.
    #[serde(rename = "30d")]
    pub month: Option<f64>,
}

/// Response-time percentiles over the last 24 hours, in milliseconds.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Latency {
    /// Median.
    pub p50: Option<i32>,
    /// 95th percentile.
    pub p95: Option<i32>,
}

/// One check in the overview.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckStatus {
    /// The check.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// `unknown`, `up`, `down`, `degraded`, `maintenance`, `paused`.
    pub status: String,
    /// Since when.
    pub status_since: chrono::DateTime<chrono::Utc>,
    /// Uptime.
    pub uptime: Uptime,
    /// Latency over 24 h.
    pub latency_ms: Latency,
}

/// `GET …/status`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StatusView {
    /// Every live check.
    pub checks: Vec<CheckStatus>,
    /// Open incidents, oldest first.
    pub open_incidents: Vec<IncidentView>,
}

fn percentile(sorted: &[i32], p: f64) -> Option<i32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Builds the overview of `org_id`.
pub async fn overview(db: &impl ConnectionTrait, org_id: Uuid) -> Result<StatusView, DbErr> {
    let now = store::now();
    let windows = store::alerts::all_windows(db, org_id).await?;
    let mut checks = Vec::new();
    for check in store::health_checks::all_live(db, org_id).await? {
        let raw =
            store::health_checks::results_since(db, check.id, now - Duration::days(30)).await?;
        let (rolled_total, rolled_ok) =
            store::health_checks::rollup_totals(db, check.id, now - Duration::days(30), now)
                .await?;
        // Raw results carry their own time only through `results_since`, so each period
        // is fetched on its own (the 30-day set includes the shorter ones).
        let day =
            store::health_checks::results_since(db, check.id, now - Duration::days(1)).await?;
        let week =
            store::health_checks::results_since(db, check.id, now - Duration::days(7)).await?;
        let share = |rows: &[(bool, i32)], extra: (i64, i64)| -> Option<f64> {
            let total = rows.len() as i64 + extra.0;
            let ok = rows.iter().filter(|(s, _)| *s).count() as i64 + extra.1;
            (total > 0).then(|| (ok as f64 * 10_000.0 / total as f64).round() / 100.0)
        };
        let week_rollups =
            store::health_checks::rollup_totals(db, check.id, now - Duration::days(7), now).await?;
        // Rolled-up results count in every period they fall in: with a result retention
        // under a day, the last 24 hours are partly rollups too.
        let day_rollups =
            store::health_checks::rollup_totals(db, check.id, now - Duration::days(1), now).await?;
        let mut latencies: Vec<i32> = day.iter().map(|(_, ms)| *ms).collect();
        latencies.sort_unstable();
        let in_window = windows
            .iter()
            .any(|w| window_covers(w, check.id, &check.labels) && window_active(w, now));
        let view = super::health::HealthCheckView::new(&check, in_window);
        checks.push(CheckStatus {
            id: check.id,
            name: check.name.clone(),
            status: view.status,
            status_since: check.status_since,
            uptime: Uptime {
                day: share(&day, day_rollups),
                week: share(&week, week_rollups),
                month: share(&raw, (rolled_total, rolled_ok)),
            },
            latency_ms: Latency {
                p50: percentile(&latencies, 0.5),
                p95: percentile(&latencies, 0.95),
            },
        });
    }
    let open_incidents = store::incidents::open_for_org(db, org_id)
        .await?
        .into_iter()
        .map(|i| IncidentView::new(i, Vec::new()))
        .collect();
    Ok(StatusView {
        checks,
        open_incidents,
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<i32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), Some(50));
        assert_eq!(percentile(&sorted, 0.95), Some(95));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
