//! Graceful shutdown: stop accepting, let in-flight requests finish, then exit cleanly — both
//! through the server handle and through a real SIGTERM to the binary.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use tokio::sync::Notify;

use crate::helpers::{TestApp, TestDb, eventually, gatehouse};

/// Holds a request in its handler until the test lets it go.
#[derive(Default)]
struct Gate {
    /// The handler is running.
    entered: Notify,
    /// The handler may answer.
    release: Notify,
}

fn gated_route(gate: Arc<Gate>) -> impl Fn(&mut web::ServiceConfig) + Send + Clone + 'static {
    move |cfg| {
        let gate = gate.clone();
        cfg.route(
            "/test/slow",
            web::get().to(move || {
                let gate = gate.clone();
                async move {
                    gate.entered.notify_one();
                    gate.release.notified().await;
                    HttpResponse::Ok().body("finished")
                }
            }),
        );
    }
}

#[actix_web::test]
async fn an_in_flight_request_completes_during_graceful_shutdown() {
    let gate = Arc::new(Gate::default());
    let mut app = TestApp::spawn_full(TestDb::new(), |_| {}, gated_route(gate.clone())).await;
    let (url, healthz) = (app.url("/test/slow"), app.url("/healthz"));
    let client = app.client.clone();
    let in_flight = actix_rt::spawn(async move { client.get(url).send().await });
    tokio::time::timeout(Duration::from_secs(10), gate.entered.notified()).await.expect("the request reached its handler");

    // Stop while the request is held in its handler; let it answer only once the server has
    // stopped taking connections, so the answer can only come from a stopping server.
    let (stopped, response) = futures_util::future::join(app.stop(), async {
        let probe = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
        let refusing = eventually(Duration::from_secs(10), || async { probe.get(&healthz).send().await.is_err() }).await;
        assert!(refusing, "the stopping server takes no new connections");
        assert!(!in_flight.is_finished(), "the request is still in flight");
        gate.release.notify_one();
        in_flight.await.unwrap()
    })
    .await;
    let response = response.expect("the in-flight request was not cut off");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    stopped.expect("server stopped cleanly");

    let after = reqwest::Client::new().get(app.url("/healthz")).send().await;
    assert!(after.is_err(), "no new connections after shutdown");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let db = TestDb::new();
    let mut child = gatehouse()
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("GATEHOUSE__SERVER__LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("server logged its port").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "gatehouse listening" {
            break v["port"].as_u64().unwrap();
        }
    };
    let health = blocking::get_health(port);
    assert_eq!(health, 200);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutdown requested") && l.contains("SIGTERM")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("gatehouse stopped")), "{rest:?}");
}

mod blocking {
    /// A tiny blocking GET (the test above is synchronous).
    pub fn get_health(port: u64) -> u16 {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap().status().as_u16() })
    }
}
