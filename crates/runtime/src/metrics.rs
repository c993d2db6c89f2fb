//! Prometheus metrics for the server, in the text exposition format
//! (`prometheus-client`): requests by app and status, latency and instantiation
//! histograms, active instances, traps and limit hits by kind, deploys by result,
//! refused requests by reason, time waited for a CPU lane.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels: app and HTTP status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppStatus {
    /// App name.
    pub app: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels: app.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    /// App name.
    pub app: String,
}

/// Labels: app and kind (of trap or limit).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppKind {
    /// App name.
    pub app: String,
    /// Kind.
    pub kind: String,
}

/// Labels: a result or reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Result or reason.
    pub reason: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// All server metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by app and status.
    pub requests: Family<AppStatus, Counter>,
    /// Request latency in seconds, by app.
    pub latency: Family<AppLabel, Histogram, fn() -> Histogram>,
    /// Instantiation time in seconds, by app.
    pub instantiate: Family<AppLabel, Histogram, fn() -> Histogram>,
    /// Instances running now, by app.
    pub active: Family<AppLabel, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Traps and limit hits, by app and kind (trap, timeout, memory, ...).
    pub failures: Family<AppKind, Counter>,
    /// Deploys by result (ok, invalid, conflict, error) — replacements included.
    pub deploys: Family<Reason, Counter>,
    /// Requests refused before reaching an app (no-route, busy, too-large, ...).
    pub refused: Family<Reason, Counter>,
    /// Apps deployed now.
    pub apps: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Seconds guests waited for a CPU lane, by app (see `wharf_engine::cpu`).
    pub cpu_wait: Family<AppLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wharf");
        let requests = Family::<AppStatus, Counter>::default();
        let latency = Family::<AppLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let instantiate = Family::<AppLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let active = Family::<AppLabel, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        let failures = Family::<AppKind, Counter>::default();
        let deploys = Family::<Reason, Counter>::default();
        let refused = Family::<Reason, Counter>::default();
        let apps = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        let cpu_wait = Family::<AppLabel, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered by apps",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from routing a request to its response head",
            latency.clone(),
        );
        registry.register(
            "instantiate_duration_seconds",
            "Time to instantiate a component for a request",
            instantiate.clone(),
        );
        registry.register(
            "active_instances",
            "Instances handling a request now",
            active.clone(),
        );
        registry.register(
            "guest_failures",
            "Guest traps and limit hits, by kind (trap, timeout, memory, body-too-large)",
            failures.clone(),
        );
        registry.register("deploys", "Deploys by result", deploys.clone());
        registry.register(
            "refused_requests",
            "Requests refused before reaching an app, by reason",
            refused.clone(),
        );
        registry.register("apps", "Apps deployed", apps.clone());
        registry.register(
            "cpu_wait_seconds",
            "Time guests that ran past their first slice waited for a CPU lane",
            cpu_wait.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            instantiate,
            active,
            failures,
            deploys,
            refused,
            apps,
            cpu_wait,
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# error encoding metrics\n");
        }
        out
    }

    /// Counts a refused request.
    pub fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a deploy result.
    pub fn deploy(&self, result: &str) {
        self.deploys
            .get_or_create(&Reason {
                reason: result.to_string(),
            })
            .inc();
    }
}
