//! /healthz, /readyz, security headers, request ids and the JSON 404.

use crate::helpers::{TestApp, TestDb};

#[actix_web::test]
async fn healthz_and_readyz_answer_200_on_a_current_database() {
    let app = TestApp::spawn().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");

    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["migrations"], "ok");
}

#[actix_web::test]
async fn readyz_is_503_while_migrations_are_pending() {
    let db = TestDb::empty();
    let app = TestApp::spawn_on(db, |_| {}).await;
    assert_eq!(app.get("/healthz").await.status(), 200, "the process itself is fine");
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert!(body["checks"]["migrations"].as_str().unwrap().ends_with("pending"));

    gatehouse::db::migrations::run_pending(&mut app.db.conn()).unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200, "ready without a restart once migrated");
}

#[actix_web::test]
async fn responses_carry_security_headers_and_a_unique_request_id() {
    let app = TestApp::spawn().await;
    let a = app.get("/healthz").await;
    let b = app.get("/healthz").await;
    for r in [&a, &b] {
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert!(h.get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    }
    let id_a = a.headers()["x-request-id"].to_str().unwrap();
    let id_b = b.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id_a.len(), 36);
    assert_ne!(id_a, id_b);
}

#[actix_web::test]
async fn unknown_routes_get_a_json_404_and_wrong_methods_a_405() {
    let app = TestApp::spawn().await;
    let r = app.get("/no/such/thing").await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");
    assert_eq!(body["error"]["code"], "not_found");

    let r = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

/// Sends one request whose head is about `head_bytes` long on a raw socket and returns what came
/// back before the server closed (or an I/O error such as a reset).
async fn raw_request(port: u16, head_bytes: usize) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let filler = "a".repeat(head_bytes.saturating_sub(80));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Filler: {filler}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[actix_web::test]
async fn request_heads_over_the_limit_get_431_in_json_not_a_reset() {
    let app = TestApp::spawn_on(TestDb::new(), |c| c.server.max_header_bytes = 16 * 1024).await;
    let answer = raw_request(app.port, 12 * 1024).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{}", &answer[..answer.len().min(200)]);
    // Up to the HTTP parser's own 128 KiB buffer, the whole head is read, so the 431 arrives in full
    // (a reset would be an `Err` here) and carries the JSON error and the request id.
    for size in [17 * 1024, 60 * 1024, 120 * 1024] {
        let answer = raw_request(app.port, size).await.unwrap_or_else(|e| panic!("{size}-byte head: {e}"));
        assert!(answer.starts_with("HTTP/1.1 431"), "{size}: {answer}");
        assert!(answer.contains("request_header_fields_too_large"), "a JSON error body: {answer}");
        assert!(answer.to_ascii_lowercase().contains("x-request-id:"), "{answer}");
    }
    assert!(raw_request(app.port, 12 * 1024).await.unwrap().starts_with("HTTP/1.1 200"), "heads under the limit still pass");
}
