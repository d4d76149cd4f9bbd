//! Prometheus metrics (`GET /metrics`, text format), through the `metrics` facade. Names and
//! labels are a contract with dashboards and alert rules: change them only with a reason.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `gatehouse_queue_depth` | gauge | pool, tenant |
//! | `gatehouse_queue_wait_seconds` | histogram | pool |
//! | `gatehouse_queue_saturated` | gauge (1 = above its wait target: adaptive admission holds tenants to their share) | pool |
//! | `gatehouse_queue_tenants_held` | gauge (tenants refused beyond their share now) | pool |
//! | `gatehouse_worker_up` | gauge (1 = takes work) | pool, worker, state |
//! | `gatehouse_worker_outstanding` | gauge | pool, worker |
//! | `gatehouse_request_duration_seconds` | histogram | pool, model, status |
//! | `gatehouse_time_to_first_token_seconds` | histogram | pool, model |
//! | `gatehouse_tokens_total` | counter | model, direction (`in` prompt / `out` completion) |
//! | `gatehouse_upstream_errors_total` | counter | pool, kind (connect, timeout, status, stream) |
//! | `gatehouse_auth_failures_total` | counter | endpoint (`v1`, `oauth2`) |
//! | `gatehouse_rate_limited_total` | counter | scope, dimension |
//! | `gatehouse_quota_exceeded_total` | counter | period |
//! | `gatehouse_prompt_rule_matches_total` | counter | pack, action (`block`, `flag`: what the rule did for the tenant) |
//! | `gatehouse_audio_seconds_total` | counter | model |
//! | `gatehouse_batch_items` | histogram | — |
//! | `gatehouse_usage_writes_total`, `gatehouse_usage_write_failures_total` | counter | — |
//! | `gatehouse_usage_journal_errors_total` | counter (journal appends or rotations that failed) | — |
//! | `gatehouse_redis_errors_total` | counter | — |
//! | `gatehouse_edge_refusals_total` | counter | reason (`banned`, `ip_rule`) |
//! | `gatehouse_ip_bans_total` | counter | reason (`request_rate`, `auth_failures`, `client_errors`) |
//! | `gatehouse_ip_bans_active` | gauge | — |
//! | `gatehouse_cors_preflights_total` | counter | outcome (`allowed`, `refused`) |
//! | `gatehouse_edge_untracked_total` | counter | — |
//! | `gatehouse_task_restarts_total` | counter | task |
//! | `gatehouse_alerts_pending` | gauge | — |
//! | `gatehouse_alerts_sent_total`, `gatehouse_alerts_failed_total` | counter | — |
//! | `gatehouse_malware_scans_total` | counter | result (`clean`, `infected`, `error`: no verdict) |
//! | `gatehouse_dashboard_logins_total` | counter | outcome (`success`, `bad_credentials`, `ip_limited`, `locked_out`, `oidc_refused`) |
//!
//! `ops/prometheus/alerts.yml` and `ops/grafana/gatehouse.json` use these names; a test checks
//! that each name they use is exported.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (several applications in one test process share it).
pub fn install() {
    HANDLE.get_or_init(|| match PrometheusBuilder::new().set_buckets(&BUCKETS).and_then(PrometheusBuilder::install_recorder) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    });
}

/// The current metrics in Prometheus text format.
pub fn render() -> String {
    HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default()
}
