//! Prometheus metrics, served at `/metrics` on the admin listener.
//!
//! Labels take bounded values only (a method outside MCP's known set is
//! `other`; upstreams are the configured ones), so an agent cannot blow up
//! the series count. Gauges that describe state (approvals pending, audit
//! queue, sink lag, checkpoint) are read when scraped.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// MCP methods kept as label values; anything else is `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
];

/// A request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    decision: &'static str,
    upstream: String,
    method: &'static str,
}

/// A phase's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PhaseLabels {
    phase: &'static str,
}

/// An upstream call's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    upstream: String,
    result: String,
}

/// A sink's or a tenant's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NameLabels {
    name: String,
}

/// The pipeline's phases that are timed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Phase {
    /// Token, certificate and agent state.
    Authenticate,
    /// Cedar (connect and the action).
    Authorize,
    /// The request record made durable.
    AuditCommit,
    /// The upstream call.
    Forward,
}

impl Phase {
    const ALL: [Self; 4] = [
        Self::Authenticate,
        Self::Authorize,
        Self::AuditCommit,
        Self::Forward,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Authenticate => "authenticate",
            Self::Authorize => "authorize",
            Self::AuditCommit => "audit_commit",
            Self::Forward => "forward",
        }
    }
}

fn seconds_histogram() -> Histogram {
    // 20 µs to ~20 s.
    Histogram::new(exponential_buckets(0.000_02, 2.0, 20))
}

/// Every metric the gateway keeps.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Each phase's histogram in `phase_duration_seconds`, in the order
    /// of [`Phase::ALL`]: a clone shares its series, so a request observes
    /// it without looking its labels up in the family.
    phases: [Histogram; 4],
    outcomes: Family<OutcomeLabels, Counter>,
    /// Set at scrape time.
    pub approvals_pending: Family<NameLabels, Gauge>,
    pub audit_queue: Gauge,
    pub audit_records: Gauge,
    pub checkpoint_size: Gauge,
    pub sink_lag: Family<NameLabels, Gauge>,
    pub sink_failures: Family<NameLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by decision, upstream and MCP method",
            requests.clone(),
        );
        let phases: Family<PhaseLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram);
        registry.register(
            "phase_duration_seconds",
            "Time spent in each phase of the request pipeline",
            phases.clone(),
        );
        let phases = Phase::ALL.map(|phase| {
            phases
                .get_or_create(&PhaseLabels {
                    phase: phase.label(),
                })
                .clone()
        });
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "upstream_calls",
            "Forwarded calls by upstream and result",
            outcomes.clone(),
        );
        let approvals_pending = Family::<NameLabels, Gauge>::default();
        registry.register(
            "approvals_pending",
            "Approvals waiting for reviewers, by tenant",
            approvals_pending.clone(),
        );
        let audit_queue = Gauge::default();
        registry.register(
            "audit_queue_depth",
            "Outcome records queued and not yet committed",
            audit_queue.clone(),
        );
        let audit_records = Gauge::default();
        registry.register(
            "audit_records",
            "Records in the audit log (its last seq)",
            audit_records.clone(),
        );
        let checkpoint_size = Gauge::default();
        registry.register(
            "audit_checkpoint_size",
            "Records covered by the latest signed checkpoint",
            checkpoint_size.clone(),
        );
        let sink_lag = Family::<NameLabels, Gauge>::default();
        registry.register(
            "audit_sink_lag_records",
            "Records an audit sink has not delivered yet",
            sink_lag.clone(),
        );
        let sink_failures = Family::<NameLabels, Gauge>::default();
        registry.register(
            "audit_sink_failures",
            "Failed deliveries of an audit sink since start",
            sink_failures.clone(),
        );
        Self {
            registry,
            requests,
            phases,
            outcomes,
            approvals_pending,
            audit_queue,
            audit_records,
            checkpoint_size,
            sink_lag,
            sink_failures,
        }
    }

    /// A request decided (its record written).
    pub(crate) fn request(&self, allowed: bool, upstream: Option<&str>, method: Option<&str>) {
        let method = method
            .and_then(|m| METHODS.iter().find(|k| **k == m).copied())
            .unwrap_or(if method.is_some() { "other" } else { "none" });
        self.requests
            .get_or_create(&RequestLabels {
                decision: if allowed { "allow" } else { "deny" },
                upstream: upstream.unwrap_or("").to_owned(),
                method,
            })
            .inc();
    }

    /// Time spent in `phase`.
    pub(crate) fn phase(&self, phase: Phase, took: Duration) {
        let [authenticate, authorize, audit_commit, forward] = &self.phases;
        let histogram = match phase {
            Phase::Authenticate => authenticate,
            Phase::Authorize => authorize,
            Phase::AuditCommit => audit_commit,
            Phase::Forward => forward,
        };
        histogram.observe(took.as_secs_f64());
    }

    /// A forwarded call's result.
    pub(crate) fn outcome(&self, upstream: &str, result: &str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                upstream: upstream.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// A tenant's or sink's label.
    pub(crate) fn name(name: &str) -> NameLabels {
        NameLabels {
            name: name.to_owned(),
        }
    }

    /// The text exposition (OpenMetrics).
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn unknown_methods_share_one_series() {
        let m = Metrics::new();
        for i in 0..1000 {
            m.request(false, None, Some(&format!("attack/{i}")));
        }
        m.request(true, Some("crm"), Some("tools/call"));
        m.phase(Phase::Authorize, Duration::from_micros(15));
        m.outcome("crm", "ok");
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"warden_requests_total{decision="deny",upstream="",method="other"} 1000"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"warden_requests_total{decision="allow",upstream="crm",method="tools/call"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"warden_phase_duration_seconds_count{phase="authorize"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"warden_upstream_calls_total{upstream="crm",result="ok"} 1"#),
            "{text}"
        );
        assert!(!text.contains("attack/"));
    }

    #[test]
    fn each_phase_is_observed_in_its_own_series() {
        let m = Metrics::new();
        for (n, phase) in Phase::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                m.phase(phase, Duration::from_micros(30));
            }
        }
        let text = m.encode().unwrap();
        for (n, phase) in Phase::ALL.into_iter().enumerate() {
            let count = format!(
                r#"warden_phase_duration_seconds_count{{phase="{}"}} {}"#,
                phase.label(),
                n + 1
            );
            assert!(text.contains(&count), "{count} in {text}");
        }
    }
}
