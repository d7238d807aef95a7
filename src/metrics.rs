//! Every Prometheus metric Gantry exports, registered once in one registry.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    /// `gantry_http_requests_total{route,method,status}`.
    pub http_requests_total: IntCounterVec,
    /// `gantry_http_request_duration_seconds{route,method}`.
    pub http_request_duration_seconds: HistogramVec,
    /// `gantry_outbox_backlog`: unpublished events, as last seen by a publisher.
    pub outbox_backlog: IntGauge,
    /// `gantry_outbox_lag_seconds`: commit → published.
    pub outbox_lag_seconds: Histogram,
    /// `gantry_outbox_published_total`: events this process published.
    pub outbox_published_total: IntCounter,
    /// `gantry_webhook_deliveries_total{outcome}`: attempts by outcome
    /// (`delivered`, `retry`, `failed`).
    pub webhook_deliveries_total: IntCounterVec,
    /// `gantry_jobs_total{queue,outcome}`: job runs by outcome (`completed`, `retried`, `dead`).
    pub jobs_total: IntCounterVec,
    /// `gantry_job_duration_seconds{queue}`: handler run time.
    pub job_duration_seconds: HistogramVec,
    /// `gantry_queue_depth{queue,state}`: jobs per state, refreshed by running workers.
    pub queue_depth: IntGaugeVec,
    /// `gantry_worker_busy{queue}`: jobs this process is running right now.
    pub worker_busy: IntGaugeVec,
    /// `gantry_workspaces{status}`: workspaces per status, refreshed by publisher processes.
    pub workspaces: IntGaugeVec,
    /// `gantry_workspace_oldest_unready_age_seconds`: age of the oldest workspace still pending
    /// or provisioning (0 when none).
    pub workspace_oldest_unready_age_seconds: prometheus::Gauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "gantry_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gantry_http_request_duration_seconds",
                "Time from request received to response ready, by route template and method.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "method"],
        )?;
        let outbox_backlog = IntGauge::new(
            "gantry_outbox_backlog",
            "Outbox events not yet published, as last seen by this process's publisher.",
        )?;
        let outbox_lag_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "gantry_outbox_lag_seconds",
                "Time from an event's commit to its publication.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )?;
        let outbox_published_total = IntCounter::new(
            "gantry_outbox_published_total",
            "Outbox events this process published.",
        )?;
        let webhook_deliveries_total = IntCounterVec::new(
            Opts::new(
                "gantry_webhook_deliveries_total",
                "Webhook delivery attempts by outcome: delivered, retry (will be tried again), \
                 failed (no attempts left).",
            ),
            &["outcome"],
        )?;
        let jobs_total = IntCounterVec::new(
            Opts::new(
                "gantry_jobs_total",
                "Job runs by queue and outcome: completed, retried (failed, another attempt is \
                 scheduled), dead (permanent failure or no attempts left).",
            ),
            &["queue", "outcome"],
        )?;
        let job_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gantry_job_duration_seconds",
                "Time a job handler ran, by queue.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["queue"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "gantry_queue_depth",
                "Jobs per queue and state (pending, scheduled, running, dead), as last counted \
                 by a worker process.",
            ),
            &["queue", "state"],
        )?;
        let worker_busy = IntGaugeVec::new(
            Opts::new(
                "gantry_worker_busy",
                "Jobs this process is running right now, by queue.",
            ),
            &["queue"],
        )?;
        let workspaces = IntGaugeVec::new(
            Opts::new(
                "gantry_workspaces",
                "Workspaces per status, as last counted by a publisher process.",
            ),
            &["status"],
        )?;
        let workspace_oldest_unready_age_seconds = prometheus::Gauge::new(
            "gantry_workspace_oldest_unready_age_seconds",
            "Seconds since the oldest workspace still pending or provisioning last changed \
             (0 when none).",
        )?;
        registry.register(Box::new(workspaces.clone()))?;
        registry.register(Box::new(workspace_oldest_unready_age_seconds.clone()))?;
        registry.register(Box::new(jobs_total.clone()))?;
        registry.register(Box::new(job_duration_seconds.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(worker_busy.clone()))?;
        registry.register(Box::new(webhook_deliveries_total.clone()))?;
        registry.register(Box::new(http_requests_total.clone()))?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
        registry.register(Box::new(outbox_backlog.clone()))?;
        registry.register(Box::new(outbox_lag_seconds.clone()))?;
        registry.register(Box::new(outbox_published_total.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Every series a dashboard or alert uses exists from the start (at zero), so a rule
        // never points at a metric that is merely not born yet.
        for outcome in ["delivered", "retry", "failed"] {
            webhook_deliveries_total.with_label_values(&[outcome]);
        }
        for status in crate::store::workspaces::status::ALL {
            workspaces.with_label_values(&[status]);
        }
        let metrics = Self {
            registry,
            workspaces,
            workspace_oldest_unready_age_seconds,
            http_requests_total,
            http_request_duration_seconds,
            outbox_backlog,
            outbox_lag_seconds,
            outbox_published_total,
            webhook_deliveries_total,
            jobs_total,
            job_duration_seconds,
            queue_depth,
            worker_busy,
        };
        for spec in crate::config::QUEUES {
            metrics.touch_queue(spec.name);
        }
        Ok(metrics)
    }

    /// Creates a queue's series at zero, so dashboards and alerts see them before its first job.
    pub fn touch_queue(&self, queue: &str) {
        for outcome in ["completed", "retried", "dead"] {
            self.jobs_total.with_label_values(&[queue, outcome]);
        }
        self.job_duration_seconds.with_label_values(&[queue]);
        self.worker_busy.with_label_values(&[queue]);
        for state in ["pending", "running", "scheduled", "dead"] {
            self.queue_depth.with_label_values(&[queue, state]);
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}
