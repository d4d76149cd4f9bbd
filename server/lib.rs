//! Gatehouse: a multi-tenant gateway in front of self-hosted AI model workers.
//!
//! One binary is the OAuth2 authorization server, the OpenAI-compatible gateway, the GPU job
//! scheduler, the usage meter and the admin dashboard. This file only lists the modules; each
//! module's own `//!` line says what belongs in it.

pub mod actors;
pub mod admission;
pub mod alerting;
pub mod audio;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod dev;
pub mod domain;
pub mod edge;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod limits;
pub mod metering;
pub mod routes;
pub mod scheduler;
pub mod service;
pub mod simulator;
pub mod startup;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod workers;
