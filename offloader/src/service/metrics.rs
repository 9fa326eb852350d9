//! `/metrics`: job counts by state and queue depth are read from the job
//! table at scrape time; attempts and their durations are counted as they
//! happen.

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use signaling::jobs::JobState;

pub(crate) const STATES: [JobState; 6] = [
    JobState::Queued,
    JobState::Running,
    JobState::Processing,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
];

pub(crate) fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Processing => "processing",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

pub(crate) struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    queue_depth: IntGauge,
    workers_busy: IntGauge,
    pub attempts: IntCounter,
    pub retries: IntCounter,
    pub outcomes: IntCounterVec,
    pub attempt_seconds: HistogramVec,
}

/// The table's figures at scrape time.
pub(crate) struct Snapshot {
    pub by_state: [i64; 6],
    pub queued: i64,
    pub busy: i64,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Registration fails only on a duplicate name, which these
        // constants rule out.
        let jobs = IntGaugeVec::new(
            Opts::new("offloader_jobs", "Jobs known to this offloader, by state"),
            &["state"],
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new(
            "offloader_queue_depth",
            "Jobs waiting for a worker (including retries in back-off)",
        )
        .expect("valid metric");
        let workers_busy =
            IntGauge::new("offloader_workers_busy", "Attempts running now").expect("valid metric");
        let attempts = IntCounter::new("offloader_job_attempts_total", "Attempts started")
            .expect("valid metric");
        let retries = IntCounter::new(
            "offloader_job_retries_total",
            "Attempts scheduled again after a transient failure",
        )
        .expect("valid metric");
        let outcomes = IntCounterVec::new(
            Opts::new(
                "offloader_job_outcomes_total",
                "Jobs finished, by final state",
            ),
            &["state"],
        )
        .expect("valid metric");
        let attempt_seconds = HistogramVec::new(
            HistogramOpts::new("offloader_attempt_duration_seconds", "Attempt durations").buckets(
                vec![
                    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
                ],
            ),
            &["end"],
        )
        .expect("valid metric");
        for c in [
            Box::new(jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(queue_depth.clone()),
            Box::new(workers_busy.clone()),
            Box::new(attempts.clone()),
            Box::new(retries.clone()),
            Box::new(outcomes.clone()),
            Box::new(attempt_seconds.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            jobs,
            queue_depth,
            workers_busy,
            attempts,
            retries,
            outcomes,
            attempt_seconds,
        }
    }

    pub fn render(&self, snap: Snapshot) -> String {
        for (s, n) in STATES.iter().zip(snap.by_state) {
            self.jobs.with_label_values(&[state_name(*s)]).set(n);
        }
        self.queue_depth.set(snap.queued);
        self.workers_busy.set(snap.busy);
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics do not encode");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
