//! Auth hot paths, measured in-process against a real (migrated) PostgreSQL database:
//! `/v1` bearer verification with warm caches (JWT and API key), cold JWT signature checks, and
//! access-token issuing. Run with `cargo bench --bench auth`; figures go in docs/performance.md.
//! Uses a scratch database (`support::ScratchDb`).

#![allow(clippy::expect_used, clippy::unwrap_used)] // benchmark set-up: a failure should stop the run loudly

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::auth::service::AuthService;
use gatehouse::config::{Config, Secret};
use gatehouse::db::Db;
use gatehouse::service::Actor;

mod support;

fn bench(c: &mut Criterion) {
    gatehouse::startup::tls::install_crypto_provider();
    let scratch = support::ScratchDb::create("auth").expect("PostgreSQL reachable");
    let url = scratch.url.clone();

    let mut config = Config::default();
    config.database.url = Secret::new(url.clone());
    config.auth.issuer = "https://api.example.com".into();
    config.auth.master_key = Secret::new(gatehouse::auth::seal::MasterKey::generate_encoded());
    config.auth.pepper = Secret::new("bench-pepper-bench-pepper-bench-pepper-01");
    let auth = AuthService::new(&config).expect("auth service");
    let mut conn = scratch.connect();
    gatehouse::auth::rotation::maintain(&mut conn, &auth.master, config.auth.signing_alg, 90, chrono::Utc::now()).expect("keys");
    let tenant = gatehouse::service::tenants::create(
        &mut conn,
        &gatehouse::service::tenants::CreateTenantRequest { name: "Bench".into(), slug: None, time_zone: None, plan: None },
        &Actor::cli(),
    )
    .expect("tenant");
    let tenant = gatehouse::domain::TenantId::parse(&tenant.id).expect("id");
    let client = gatehouse::service::clients::create(
        &mut conn,
        &auth.pepper,
        &tenant,
        &gatehouse::service::clients::CreateClientRequest {
            name: "bench".into(),
            scopes: vec!["models:read".into()],
            ip_allowlist: Vec::new(),
            token_ttl_seconds: None,
            secret_expires_at: None,
        },
        &Actor::cli(),
    )
    .expect("client");
    let key = gatehouse::service::api_keys::create(
        &mut conn,
        &auth.pepper,
        &tenant,
        &gatehouse::service::api_keys::CreateApiKeyRequest {
            name: "bench".into(),
            scopes: vec!["models:read".into()],
            environment: None,
            expires_in_days: None,
            ip_allowlist: Vec::new(),
        },
        &Actor::cli(),
    )
    .expect("key")
    .key;
    let record = gatehouse::db::clients::find_for_authentication(&mut conn, &client.client.client_id).expect("query").expect("client row");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let db = Db::new(&url, &config.database);
    rt.block_on(auth.reload_keys(&db)).expect("keys load");
    let scopes = gatehouse::domain::Scopes::parse("models:read").expect("scopes");
    let (token, _, _) = auth.issue(&record, &scopes).expect("token");
    let ip: Option<IpAddr> = Some("127.0.0.1".parse().expect("ip"));
    // Warm the caches once.
    rt.block_on(auth.authenticate_bearer(&db, &token, ip)).expect("jwt ok");
    rt.block_on(auth.authenticate_bearer(&db, &key, ip)).expect("key ok");

    c.bench_function("bearer_jwt_warm", |b| b.iter(|| rt.block_on(auth.authenticate_bearer(&db, black_box(&token), ip)).expect("ok")));
    c.bench_function("bearer_api_key_warm", |b| b.iter(|| rt.block_on(auth.authenticate_bearer(&db, black_box(&key), ip)).expect("ok")));
    let keys = auth.keys.snapshot();
    c.bench_function("jwt_signature_verify_cold", |b| {
        b.iter(|| {
            gatehouse::auth::jwt::verify(
                &keys,
                black_box(&token),
                "https://api.example.com",
                "https://api.example.com/v1",
                chrono::Utc::now().timestamp(),
            )
            .expect("valid")
        })
    });
    c.bench_function("issue_token_es256", |b| b.iter(|| auth.issue(black_box(&record), &scopes).expect("issued")));
    c.bench_function("client_secret_check", |b| {
        b.iter(|| auth.pepper.verify(black_box(&client.client_secret), &record.client.secret_hash))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
