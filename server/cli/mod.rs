//! Command-line interface: argument definitions and the commands behind them. Commands that
//! create or list something take `--json` and then print only JSON on stdout; logs go to stderr.
//! Errors carry their exit code: 2 for usage and configuration errors, 1 for runtime failures.

pub mod alerts;
pub mod credentials;
pub mod ip_rules;
pub mod operator;
pub mod plans;
pub mod pools;
pub mod tenant;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use diesel::{Connection, PgConnection};
use serde::Serialize;

use crate::config::{CONFIG_ENV, Config};
use crate::db::{migrations, partitions, redact_url};
pub use crate::error::CliError;
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about = "Multi-tenant gateway for self-hosted AI model workers")]
pub struct Cli {
    /// Configuration file (TOML); GATEHOUSE__SECTION__KEY variables override it.
    #[arg(long, global = true, env = CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (production entry point).
    Serve {
        /// Apply pending database migrations before serving.
        #[arg(long)]
        migrate: bool,
    },
    /// Apply pending database migrations (under an advisory lock; safe to run concurrently).
    Migrate {
        #[arg(long)]
        json: bool,
    },
    /// Run everything locally: a private PostgreSQL cluster, demo data and the gateway.
    Dev(crate::dev::DevArgs),
    /// Load and validate the configuration, then print it with secrets redacted.
    CheckConfig,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: tenant::TenantCommand,
    },
    /// Manage platform operator accounts and their management-API tokens.
    Operator {
        #[command(subcommand)]
        command: operator::OperatorCommand,
    },
    /// Manage OAuth2 clients.
    Client {
        #[command(subcommand)]
        command: credentials::ClientCommand,
    },
    /// Manage API keys.
    ApiKey {
        #[command(subcommand)]
        command: credentials::ApiKeyCommand,
    },
    /// Manage tenant admins.
    Admin {
        #[command(subcommand)]
        command: credentials::AdminCommand,
    },
    /// Manage access-token signing keys.
    SigningKey {
        #[command(subcommand)]
        command: credentials::SigningKeyCommand,
    },
    /// Manage worker pools.
    Pool {
        #[command(subcommand)]
        command: pools::PoolCommand,
    },
    /// Manage the workers of a pool.
    Worker {
        #[command(subcommand)]
        command: pools::WorkerCommand,
    },
    /// Manage plans: limits, quotas, scheduling weight, allowed models.
    Plan {
        #[command(subcommand)]
        command: plans::PlanCommand,
    },
    /// Alerts: send a test mail, list alerts, manage who receives them.
    Alerts {
        #[command(subcommand)]
        command: alerts::AlertsCommand,
    },
    /// IP rules: the platform's deny and allow networks, and each tenant's.
    IpRules {
        #[command(subcommand)]
        command: ip_rules::IpRulesCommand,
    },
    /// Addresses banned for attacking (too many requests, failed logins or bad requests).
    Bans {
        #[command(subcommand)]
        command: ip_rules::BansCommand,
    },
    /// Export data (usage for billing).
    Export {
        #[command(subcommand)]
        command: plans::ExportCommand,
    },
    /// Run a worker SIMULATOR (OpenAI-compatible, vLLM-like) for development, tests and benchmarks.
    SimulateWorker(crate::simulator::llm::SimulatorConfig),
}

/// Shared `--json` flag.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print JSON only (for scripts).
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let mut config = Config::load(cli.config.as_deref())?;
    if matches!(cli.command, Command::Dev(_)) && std::env::var_os("GATEHOUSE__LOG__REQUESTS_AT_DEBUG").is_none() {
        // Dev's banner is the page a newcomer reads: request lines go to debug unless asked for.
        config.log.requests_at_debug = true;
    }
    crate::telemetry::init(&config.log);
    match cli.command {
        Command::CheckConfig => check_config(&config),
        Command::Serve { migrate } => serve(config, migrate),
        Command::Migrate { json } => migrate(&config, json),
        Command::Dev(args) => crate::dev::run(config, args),
        Command::Tenant { command } => tenant::run(&config, command),
        Command::Operator { command } => operator::run(&config, command),
        Command::Client { command } => credentials::run_client(&config, command),
        Command::ApiKey { command } => credentials::run_api_key(&config, command),
        Command::Admin { command } => credentials::run_admin(&config, command),
        Command::SigningKey { command } => credentials::run_signing_key(&config, command),
        Command::SimulateWorker(sim) => simulate_worker(sim),
        Command::Pool { command } => pools::run_pool(&config, command),
        Command::Worker { command } => pools::run_worker(&config, command),
        Command::Plan { command } => plans::run_plan(&config, command),
        Command::Export { command } => plans::run_export(&config, command),
        Command::Alerts { command } => alerts::run(&config, command),
        Command::IpRules { command } => ip_rules::run_ip_rules(&config, command),
        Command::Bans { command } => ip_rules::run_bans(&config, command),
    }
}

fn check_config(config: &Config) -> Result<(), CliError> {
    config.validate()?;
    let text = toml::to_string_pretty(config).map_err(|e| CliError::runtime(format!("cannot render configuration: {e}")))?;
    println!("# configuration is valid (secrets redacted)\n{text}");
    Ok(())
}

fn serve(config: Config, migrate_first: bool) -> Result<(), CliError> {
    config.validate()?;
    config.database_url()?;
    config.require_auth_secrets()?;
    if let Some(roots) = crate::startup::tls::probe_ca_roots() {
        tracing::debug!(ca_roots = %roots, "outbound CA roots found");
    } else {
        tracing::warn!("no system CA bundle found; outbound HTTPS to workers will fail (install ca-certificates)");
    }
    if migrate_first {
        let applied = migrations::run_pending(&mut connect(&config)?)?;
        tracing::info!(applied = ?applied, "migrations applied");
    }
    actix_rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        app.run_until_stopped().await
    })?;
    Ok(())
}

fn simulate_worker(sim: crate::simulator::llm::SimulatorConfig) -> Result<(), CliError> {
    actix_rt::System::new().block_on(async move {
        let models = if sim.models.is_empty() { sim.kind.default_model().to_owned() } else { sim.models.join(", ") };
        let kind = format!("{:?}", sim.kind).to_lowercase();
        let simulator = crate::simulator::llm::Simulator::start(sim).map_err(|e| CliError::Usage(format!("{e:#}")))?;
        eprintln!("gatehouse {kind} worker SIMULATOR (not a real model) serving {models} on port {}", simulator.port);
        let handle = simulator.server.handle();
        actix_rt::spawn(async move {
            if crate::startup::wait_for_signal().await.is_some() {
                handle.stop(true).await;
            }
        });
        simulator.server.await.map_err(|e| CliError::runtime(format!("simulator failed: {e}")))
    })
}

fn migrate(config: &Config, json: bool) -> Result<(), CliError> {
    config.validate()?;
    let mut conn = connect(config)?;
    let applied = migrations::run_pending(&mut conn)?;
    let report = partitions::maintain(&mut conn, chrono::Utc::now(), &config.retention)?;
    if json {
        print_json(&serde_json::json!({
            "applied": applied,
            "partitions_created": report.created,
            "partitions_dropped": report.dropped,
        }))?;
    } else if applied.is_empty() {
        println!("database schema is up to date; no migrations applied");
    } else {
        println!("applied {} migration(s): {}", applied.len(), applied.join(", "));
    }
    Ok(())
}

/// One connection for a CLI command. No retry: a command run by a person should fail fast.
pub fn connect(config: &Config) -> Result<PgConnection, CliError> {
    let url = config.database_url()?;
    PgConnection::establish(url).map_err(|e| CliError::runtime(format!("cannot connect to the database at {}: {e}", redact_url(url))))
}

/// A connection to a database whose schema is current (partitions created ahead), for commands
/// that read or write data.
pub fn connect_current(config: &Config) -> Result<PgConnection, CliError> {
    let mut conn = connect(config)?;
    let pending = migrations::pending(&mut conn)?;
    if !pending.is_empty() {
        return Err(CliError::runtime(format!(
            "the database schema is behind this binary ({} pending migration(s)); run `gatehouse migrate` first",
            pending.len()
        )));
    }
    partitions::maintain(&mut conn, chrono::Utc::now(), &config.retention)?;
    Ok(conn)
}

pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::runtime(format!("cannot render JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
