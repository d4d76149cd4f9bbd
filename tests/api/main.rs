//! The integration test binary: real PostgreSQL, the real `Application` on port 0, the real
//! `gatehouse` binary for CLI tests. One file per concern; helpers in `helpers.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod alert_rules;
mod alert_stores;
mod alerts;
mod alignment_bounds;
mod alignments;
mod architecture;
mod bearer;
mod cli_config;
mod cli_tenant;
mod cors;
mod dashboard_csrf;
mod dashboard_isolation;
mod dashboard_login;
mod dashboard_oidc;
mod dashboard_operator;
mod dashboard_support;
mod dashboard_tenant;
mod dev;
mod edge;
mod gateway;
mod health;
mod helpers;
mod inference_queue;
mod limits;
mod logs;
mod malware;
mod management;
mod management_errors;
mod metrics_contract;
mod migrations;
mod oauth;
mod openapi;
mod pools;
mod prompt_rules;
mod readiness;
mod shutdown;
mod signing_keys;
mod simulator;
mod smtp;
mod supervision;
mod tls;
mod usage_export;
