//! The metric names are a contract with the Prometheus rules (`ops/prometheus/alerts.yml`) and the
//! Grafana dashboard (`ops/grafana/gatehouse.json`): every name they use is one the code exports
//! and `telemetry::metrics` documents, and the core ones are on `/metrics` after some traffic.
//! (`ops/test.sh` checks the rules' syntax with `promtool check rules`.)

use std::collections::BTreeSet;
use std::path::Path;

use crate::helpers::{TestApp, eventually};
use crate::limits::{World, chat, post};

/// `gatehouse_…` names in `text`, histogram series reduced to their family.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("gatehouse_") {
        let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_owned();
        out.insert(family);
    }
    out
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
}

#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_exported_and_documented() {
    let used: BTreeSet<String> =
        names(&read("ops/prometheus/alerts.yml")).into_iter().chain(names(&read("ops/grafana/gatehouse.json"))).collect();
    assert!(used.len() >= 15, "{used:?}");
    let mut code = String::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("server"), &mut code);
    let documented = read("server/telemetry/metrics.rs");
    for name in &used {
        assert!(code.contains(&format!("\"{name}\"")), "{name} is used by the rules or the dashboard but no code exports it");
        assert!(documented.contains(&format!("`{name}`")), "{name} is not in the table of server/telemetry/metrics.rs");
    }
}

#[actix_web::test]
async fn the_core_metrics_are_on_the_metrics_endpoint_after_traffic() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |c| c.gateway.refresh_interval_ms = 100).await;
    assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);
    assert_eq!(post(&app, &world.key, &chat(5, true)).await.status(), 200);
    assert_eq!(post(&app, "gth_live_bogus_key", &chat(5, false)).await.status(), 401);
    let core = [
        "gatehouse_request_duration_seconds_bucket",
        "gatehouse_time_to_first_token_seconds_bucket",
        "gatehouse_queue_wait_seconds_bucket",
        "gatehouse_tokens_total",
        "gatehouse_worker_up",
        "gatehouse_worker_outstanding",
        "gatehouse_auth_failures_total",
        "gatehouse_alerts_pending",
    ];
    let all_there = eventually(std::time::Duration::from_secs(10), || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        core.iter().all(|name| text.lines().any(|l| l.starts_with(name)))
    })
    .await;
    let text = app.get("/metrics").await.text().await.unwrap();
    let missing: Vec<_> = core.iter().filter(|name| !text.lines().any(|l| l.starts_with(**name))).collect();
    assert!(all_there, "missing on /metrics: {missing:?}");
}
