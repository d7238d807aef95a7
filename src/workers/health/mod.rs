//! The health poller (`--workers health-poller`): periodic tasks, no queue.
//!
//! - [`Poller`] claims due checks with a lease (`FOR UPDATE SKIP LOCKED` on Postgres), so any
//!   number of pollers share the checks and each runs once per interval; runs them
//!   concurrently; and records each run in one transaction: the result, the hysteresis state,
//!   the next due time (kept on the check's own phase, so checks stay spread over their
//!   interval), incidents, `health.*` / `incident.*` events and the notifications to send.
//! - [`notify::Notifier`] sends the recorded notifications (at most once per incident
//!   transition and channel: a unique index), retried with backoff.
//! - [`retention::Retention`] rolls raw results older than `GANTRY_HEALTH_RESULT_RETENTION`
//!   into hourly rollups and drops rollups past `GANTRY_HEALTH_ROLLUP_RETENTION`.

pub mod channels;
pub mod notify;
pub mod probe;
pub mod retention;

use super::periodic::{PeriodicTask, Round, Schedule};
use super::WorkerContext;
use crate::domain::health::{judge, parse_condition, CheckKind, Hysteresis, Outcome, State};
use crate::outbox::{self, EventType};
use crate::resources::alerts::{rule_matches, window_active, window_covers};
use crate::resources::health::{ConditionResult, HealthChangeEvent, IncidentView, ResultView};
use crate::store::{self, health_checks::HealthCheck, incidents::Incident};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Why a round or a run failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Claims due checks and runs them.
pub struct Poller {
    ctx: WorkerContext,
    owner: String,
    prober: Option<probe::Prober>,
    slots: Arc<Semaphore>,
}

impl Poller {
    /// A poller for this process.
    pub fn new(ctx: WorkerContext) -> Self {
        let policy =
            crate::webhooks::outbound::OutboundPolicy::new(ctx.config.outbound_allow.clone());
        let prober = match probe::Prober::new(policy) {
            Ok(prober) => Some(prober),
            Err(err) => {
                tracing::error!(%err, "cannot build the health-check HTTP client; checks do not run");
                None
            }
        };
        let slots = Arc::new(Semaphore::new(ctx.config.health.concurrency));
        Self {
            owner: format!("health-{}", uuid::Uuid::new_v4().simple()),
            ctx,
            prober,
            slots,
        }
    }
}

#[async_trait::async_trait]
impl PeriodicTask for Poller {
    const NAME: &'static str = "health-poller";
    type Error = HealthError;

    fn schedule(&self) -> Schedule {
        let interval = self.ctx.config.health.poll_interval;
        Schedule {
            interval,
            jitter: interval / 5,
            after_error: interval.max(Duration::from_secs(1)),
        }
    }

    async fn round(&mut self) -> Result<Round, HealthError> {
        let Some(prober) = self.prober.clone() else {
            return Ok(Round::Idle);
        };
        let free = self.slots.available_permits().min(500);
        if free == 0 {
            return Ok(Round::Idle);
        }
        let checks = store::health_checks::claim_due(
            &self.ctx.db,
            &self.owner,
            free as u64,
            crate::resources::health::MAX_INTERVAL,
        )
        .await?;
        let full = checks.len() == free;
        for check in checks {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                break;
            };
            let (ctx, owner, prober) = (self.ctx.clone(), self.owner.clone(), prober.clone());
            tokio::spawn(async move {
                let id = check.id;
                if let Err(err) = run_check(&ctx, &prober, check, &owner).await {
                    tracing::warn!(%err, check_id = %id, "health check run not recorded; its lease lapses and it runs again");
                }
                drop(permit);
            });
        }
        Ok(if full { Round::Again } else { Round::Idle })
    }
}

/// The next due time after `due`: one interval later, skipping intervals already past (a
/// poller that fell behind does not run a check twice to catch up), keeping its phase.
pub fn next_due(due: DateTime<Utc>, interval: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    let step = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::seconds(60));
    let next = due + step;
    if next > now {
        return next;
    }
    let behind = (now - next).num_milliseconds();
    let steps = behind / step.num_milliseconds().max(1) + 1;
    next + step * steps as i32
}

/// Runs one claimed check and records everything it changed.
pub async fn run_check(
    ctx: &WorkerContext,
    prober: &probe::Prober,
    check: HealthCheck,
    owner: &str,
) -> Result<(), HealthError> {
    let started_at = store::now();
    let clock = Instant::now();
    let seen = prober.probe(&check).await;
    ctx.metrics
        .health_check_duration_seconds
        .with_label_values(&[check.kind.as_str()])
        .observe(clock.elapsed().as_secs_f64());
    let kind = CheckKind::parse(&check.kind).unwrap_or(CheckKind::Http);
    let exprs: Vec<String> = serde_json::from_value(check.conditions.clone()).unwrap_or_default();
    let conditions: Vec<_> = exprs
        .iter()
        .filter_map(|e| parse_condition(e, kind).ok())
        .collect();
    let (outcome, verdicts) = judge(&conditions, &seen);
    ctx.metrics
        .health_checks_total
        .with_label_values(&[outcome.as_str()])
        .inc();
    let result = store::health_checks::NewResult {
        at: started_at,
        success: outcome == Outcome::Up,
        outcome: outcome.as_str(),
        response_time_ms: seen.response_time.as_millis().min(i32::MAX as u128) as i32,
        conditions: serde_json::json!(verdicts
            .iter()
            .map(|v| ConditionResult {
                expr: v.expr.clone(),
                success: v.success,
                actual: v.actual.clone(),
            })
            .collect::<Vec<_>>()),
        error: seen.error.clone(),
    };
    let before = Hysteresis {
        state: State::parse(&check.state),
        failures: check.consecutive_failures.max(0) as u32,
        successes: check.consecutive_successes.max(0) as u32,
    };
    let (after, changed) = before.apply(
        outcome,
        check.failure_threshold.max(1) as u32,
        check.success_threshold.max(1) as u32,
    );
    let now = store::now();
    let update = store::health_checks::RunUpdate {
        state: after.state.as_str().to_owned(),
        status_since: changed.map(|_| now),
        failures: after.failures as i32,
        successes: after.successes as i32,
        next_run_at: next_due(
            check.next_run_at,
            Duration::from_millis(check.interval_ms.max(1000) as u64),
            now,
        ),
        checked_at: started_at,
    };
    let txn = store::begin_write(&ctx.db).await?;
    if !store::health_checks::finish_run(&txn, &check, owner, &update).await? {
        // Another poller owns the check now (our lease lapsed), or it was deleted.
        return Ok(());
    }
    let stored = store::health_checks::insert_result(&txn, &check, result).await?;
    // A check that stays healthy has no incident to update and nothing to notify: most runs
    // end here, with two writes and no reads.
    if changed.is_none() && !after.state.is_failing() {
        txn.commit().await?;
        return Ok(());
    }
    let windows = store::alerts::all_windows(&txn, check.org_id).await?;
    let in_maintenance = windows
        .iter()
        .any(|w| window_covers(w, check.id, &check.labels) && window_active(w, now));
    let mut events: Vec<(EventType, uuid::Uuid, serde_json::Value)> = Vec::new();
    if let Some(state) = changed {
        let event = match state {
            State::Down => EventType::HealthDown,
            State::Degraded => EventType::HealthDegraded,
            _ => EventType::HealthUp,
        };
        let payload = HealthChangeEvent {
            check_id: check.id,
            name: check.name.clone(),
            previous: before.state.as_str().to_owned(),
            status: state.as_str().to_owned(),
            in_maintenance,
            result: ResultView::from(stored.clone()),
        };
        events.push((
            event,
            check.id,
            serde_json::to_value(payload).map_err(json_err)?,
        ));
    }
    let incident = update_incident(&txn, &check, changed, after, started_at, &mut events).await?;
    if !in_maintenance {
        schedule_notifications(&txn, &check, incident, changed, now).await?;
    }
    for (event, aggregate, payload) in events {
        outbox::record(&txn, event, check.org_id, aggregate, payload).await?;
    }
    txn.commit().await?;
    Ok(())
}

fn json_err(err: serde_json::Error) -> DbErr {
    DbErr::Json(err.to_string())
}

/// What happened to the check's incident in this run.
enum IncidentChange {
    /// None open, none opened.
    None,
    /// Open (opened now or before).
    Open(Incident),
    /// Resolved by this run.
    Resolved(Incident),
}

/// Opens, updates or resolves the check's incident after a state change.
async fn update_incident(
    txn: &impl ConnectionTrait,
    check: &HealthCheck,
    changed: Option<State>,
    after: Hysteresis,
    started_at: DateTime<Utc>,
    events: &mut Vec<(EventType, uuid::Uuid, serde_json::Value)>,
) -> Result<IncidentChange, DbErr> {
    let open = store::incidents::open_for_check(txn, check.id).await?;
    match (changed, open) {
        (Some(state), None) if state.is_failing() => {
            // The streak's first failure, `failures - 1` intervals before this run.
            let streak = chrono::Duration::milliseconds(
                i64::from(check.interval_ms) * i64::from(after.failures.saturating_sub(1)),
            );
            let opened = store::incidents::open(
                txn,
                check.org_id,
                check.id,
                state.as_str(),
                started_at - streak,
            )
            .await?;
            match opened {
                Some(incident) => {
                    let view = IncidentView::new(incident.clone(), Vec::new());
                    events.push((
                        EventType::IncidentOpened,
                        incident.id,
                        serde_json::to_value(view).map_err(json_err)?,
                    ));
                    Ok(IncidentChange::Open(incident))
                }
                None => Ok(store::incidents::open_for_check(txn, check.id)
                    .await?
                    .map_or(IncidentChange::None, IncidentChange::Open)),
            }
        }
        (Some(state), Some(incident)) if state.is_failing() => {
            let incident = store::incidents::set_cause(txn, incident, state.as_str()).await?;
            Ok(IncidentChange::Open(incident))
        }
        (Some(State::Up), Some(incident)) => {
            let incident = store::incidents::resolve(txn, incident).await?;
            let view = IncidentView::new(incident.clone(), Vec::new());
            events.push((
                EventType::IncidentResolved,
                incident.id,
                serde_json::to_value(view).map_err(json_err)?,
            ));
            Ok(IncidentChange::Resolved(incident))
        }
        (_, Some(incident)) => Ok(IncidentChange::Open(incident)),
        (_, None) => Ok(IncidentChange::None),
    }
}

/// Records the notifications this run calls for, outside maintenance: an open incident not yet
/// notified (new, or held back by a window that has ended), a repeat for an unacknowledged one,
/// a resolution of a notified one. The unique (incident, channel, transition) index makes a
/// second poller's or a retried run's insert a no-op.
async fn schedule_notifications(
    txn: &impl ConnectionTrait,
    check: &HealthCheck,
    incident: IncidentChange,
    _changed: Option<State>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let (incident, resolved) = match incident {
        IncidentChange::None => return Ok(()),
        IncidentChange::Open(incident) => (incident, false),
        IncidentChange::Resolved(incident) => (incident, true),
    };
    let rules: Vec<_> = store::alerts::all_rules(txn, check.org_id)
        .await?
        .into_iter()
        .filter(|r| rule_matches(r, check.id, &check.labels))
        .collect();
    if rules.is_empty() {
        return Ok(());
    }
    if resolved {
        if incident.opened_notified {
            for rule in rules.iter().filter(|r| r.send_on_resolved) {
                for channel in rule.channel_ids() {
                    store::incidents::insert_notification(txn, &incident, channel, "resolved", now)
                        .await?;
                }
            }
        }
        return Ok(());
    }
    if !incident.opened_notified {
        for rule in &rules {
            for channel in rule.channel_ids() {
                // Incidents opened within the group wait go out together: join a pending
                // group for the channel, or start one.
                let due = match store::incidents::pending_group_due(txn, channel).await? {
                    Some(due) => due,
                    None => now + chrono::Duration::seconds(i64::from(rule.group_wait_secs)),
                };
                store::incidents::insert_notification(txn, &incident, channel, "opened", due)
                    .await?;
            }
        }
        store::incidents::mark_notified(txn, incident, false).await?;
        return Ok(());
    }
    if incident.acknowledged_at.is_some() {
        return Ok(());
    }
    let last = incident.last_notified_at.unwrap_or(incident.opened_at);
    let repeat = rules
        .iter()
        .map(|r| r.repeat_interval_secs)
        .filter(|s| *s > 0)
        .min();
    if let Some(repeat) = repeat {
        if now - last >= chrono::Duration::seconds(i64::from(repeat)) {
            let transition = format!("repeat-{}", incident.repeat_count + 1);
            for rule in rules.iter().filter(|r| r.repeat_interval_secs > 0) {
                for channel in rule.channel_ids() {
                    store::incidents::insert_notification(
                        txn,
                        &incident,
                        channel,
                        &transition,
                        now,
                    )
                    .await?;
                }
            }
            store::incidents::mark_notified(txn, incident, true).await?;
        }
    }
    Ok(())
}

/// Records `incident.acknowledged` with the acknowledgement (used by the API).
pub async fn acknowledge(
    txn: &impl ConnectionTrait,
    incident: Incident,
    by: &str,
) -> Result<Option<Incident>, DbErr> {
    if !store::incidents::acknowledge(txn, &incident, by).await? {
        return Ok(None);
    }
    let Some(incident) = store::incidents::find_any(txn, incident.id).await? else {
        return Ok(None);
    };
    let view = IncidentView::new(incident.clone(), Vec::new());
    outbox::record(
        txn,
        EventType::IncidentAcknowledged,
        incident.org_id,
        incident.id,
        &view,
    )
    .await?;
    Ok(Some(incident))
}

/// A first due time spread over the interval by the check's id, so checks created together
/// (or a fleet restarting) do not all run at the same second.
pub fn first_due(id: uuid::Uuid, interval_ms: i32, now: DateTime<Utc>) -> DateTime<Utc> {
    let bytes = id.as_bytes();
    let mut spread = 0u64;
    for b in &bytes[8..16] {
        spread = spread.wrapping_mul(31).wrapping_add(u64::from(*b));
    }
    let offset = spread % (interval_ms.max(1) as u64);
    now + chrono::Duration::milliseconds(offset as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_due_keeps_phase_and_skips_missed_runs() {
        let due = store::now();
        let minute = Duration::from_secs(60);
        assert_eq!(
            next_due(due, minute, due + chrono::Duration::seconds(1)),
            due + chrono::Duration::seconds(60)
        );
        assert_eq!(
            next_due(due, minute, due + chrono::Duration::seconds(150)),
            due + chrono::Duration::seconds(180)
        );
    }

    #[test]
    fn first_runs_spread_over_the_interval() {
        let now = store::now();
        let offsets: std::collections::HashSet<i64> = (0..100)
            .map(|_| (first_due(uuid::Uuid::now_v7(), 60_000, now) - now).num_milliseconds())
            .collect();
        assert!(offsets.iter().all(|o| (0..60_000).contains(o)));
        assert!(offsets.len() > 90, "offsets should differ");
    }
}
