//! Usage exports under slow clients: an export holds no pooled connection while its client
//! reads, so twenty stalled downloads on a four-connection pool leave the rest of the API
//! answering; exports beyond the per-tenant bound are refused until one finishes.

use std::time::Duration;

use diesel::RunQueryDsl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, TestDb, eventually, seed};

/// Rollup rows per tenant: with long model names, about 7 MB of CSV, more than the kernel's
/// socket buffers hold (4 MB here), so a client that stops reading really stalls its export.
const ROWS_PER_TENANT: i64 = 25_000;

fn seed_rollups(db: &TestDb, tenant: &str) {
    diesel::sql_query(format!(
        "INSERT INTO usage_rollups (minute, tenant_id, credential_id, model, requests, errors, prompt_tokens, completion_tokens,
                                    audio_ms, queue_wait_ms_sum, latency_ms_sum)
         SELECT date_trunc('month', now()) + interval '1 hour', '{tenant}', 'key_' || lpad(c::text, 6, '0'), 'model-' || m || '-' || repeat('x', 200), 1, 0, 10, 20, 0, 1, 2
         FROM generate_series(1, {}) AS c, generate_series(1, 50) AS m",
        ROWS_PER_TENANT / 50
    ))
    .execute(&mut db.conn())
    .unwrap();
}

/// Starts a download on a socket with a tiny receive buffer, reads the head of the answer and
/// stops reading: the server's writes fill the window at once and block.
async fn slow_download(port: u16, path: &str, token: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0; 1024];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

#[actix_web::test]
async fn twenty_stalled_downloads_leave_the_rest_of_the_api_answering() {
    let db = TestDb::new();
    let tenants: Vec<_> = (0..4).map(|i| seed::tenant(&db, &format!("Exporter {i}"))).collect();
    for t in &tenants {
        seed_rollups(&db, t.as_str());
    }
    let operator = seed::operator_token(&db);
    let app = TestApp::spawn_on(db.share(), |c| {
        c.usage.max_exports_per_tenant = 5;
        c.usage.max_exports = 20;
    })
    .await;
    let export_path = |t: &gatehouse::domain::TenantId| format!("/api/v1/tenants/{t}/usage/export?period={}", this_month());

    // Twenty downloads that read their first bytes and then stop reading.
    let mut stalled = Vec::new();
    for t in &tenants {
        for _ in 0..5 {
            stalled.push(slow_download(app.port, &export_path(t), &operator).await);
        }
    }

    // The management API still answers (the pool has four connections, the exports twenty).
    for _ in 0..10 {
        let r = app.client.get(app.url("/api/v1/tenants")).bearer_auth(&operator).timeout(Duration::from_secs(10)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // A sixth export of one tenant waits for a slot: refused, not queued behind slow clients.
    let refused = app.get_with(&export_path(&tenants[0]), &operator).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_exports");

    // Clients that go away free their slots; a full export then has every row.
    drop(stalled);
    let complete = std::cell::RefCell::new(None);
    let got_one = eventually(Duration::from_secs(20), || async {
        let r = app.get_with(&export_path(&tenants[0]), &operator).await;
        if r.status() != 200 {
            return false; // the stalled exports notice their clients left as they write next
        }
        *complete.borrow_mut() = Some(r.text().await.unwrap());
        true
    })
    .await;
    assert!(got_one, "an export slot came free");
    let csv = complete.into_inner().unwrap();
    assert_eq!(csv.lines().count() as i64, ROWS_PER_TENANT + 1, "every row once, plus the header");
}
