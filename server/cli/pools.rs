//! `gatehouse pool add|list`, `gatehouse worker add|drain|remove`.

use clap::Subcommand;

use super::{CliError, Output, connect_current, print_json};
use crate::auth::seal::MasterKey;
use crate::config::Config;
use crate::domain::{PoolKind, WorkerState};
use crate::service::Actor;
use crate::service::workers::{self, AddWorkerRequest, CreatePoolRequest};

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Register a pool of workers serving the given models.
    Add {
        #[arg(long)]
        name: String,
        /// llm (OpenAI-compatible workers) or aligner (forced-alignment workers).
        #[arg(long, default_value = "llm")]
        kind: PoolKind,
        /// Model name served (repeatable), e.g. Qwen/Qwen2.5-7B-Instruct.
        #[arg(long = "model", required = true)]
        models: Vec<String>,
        /// Milliseconds a request may wait for a slot before 503.
        #[arg(long)]
        queue_deadline_ms: Option<i32>,
        /// Adaptive admission: the queue wait the pool aims to keep under, milliseconds
        /// (default 5000, or the deadline if shorter; 0 turns it off).
        #[arg(long)]
        queue_wait_target_ms: Option<i32>,
        /// Aligner pools: most items per batch (default 16).
        #[arg(long)]
        batch_max_items: Option<i32>,
        /// Aligner pools: most audio per batch, milliseconds (default 600000).
        #[arg(long)]
        batch_max_audio_ms: Option<i32>,
        /// Aligner pools: how long a batch may wait to fill, milliseconds (default 50).
        #[arg(long)]
        batch_max_wait_ms: Option<i32>,
        #[command(flatten)]
        output: Output,
    },
    /// List pools with their workers.
    List {
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Add a worker to a pool.
    Add {
        #[arg(long)]
        pool: String,
        /// Base URL without /v1, e.g. http://10.0.0.5:8000.
        #[arg(long)]
        url: String,
        /// Name of an environment variable holding the worker's API key (kept off the command line).
        #[arg(long)]
        api_key_env: Option<String>,
        #[arg(long)]
        slots: Option<i32>,
        #[command(flatten)]
        output: Output,
    },
    /// Let a worker finish its requests and take no new ones.
    Drain {
        worker: String,
        #[command(flatten)]
        output: Output,
    },
    /// Remove a worker.
    Remove {
        worker: String,
        #[command(flatten)]
        output: Output,
    },
}

pub fn run_pool(config: &Config, command: PoolCommand) -> Result<(), CliError> {
    let mut conn = connect_current(config)?;
    match command {
        PoolCommand::Add {
            name,
            kind,
            models,
            queue_deadline_ms,
            queue_wait_target_ms,
            batch_max_items,
            batch_max_audio_ms,
            batch_max_wait_ms,
            output,
        } => {
            let request = CreatePoolRequest {
                name,
                kind,
                models,
                queue_deadline_ms,
                queue_wait_target_ms,
                batch_max_items,
                batch_max_audio_ms,
                batch_max_wait_ms,
            };
            let pool = workers::create_pool(&mut conn, &request, &Actor::cli())?;
            if output.json {
                return print_json(&pool);
            }
            println!("pool {} ({}) serves {}", pool.name, pool.id, pool.models.join(", "));
            Ok(())
        }
        PoolCommand::List { output } => {
            let pools = workers::list_pools(&mut conn)?;
            if output.json {
                return print_json(&pools);
            }
            for p in pools {
                println!("{} [{}] {}", p.name, p.kind, p.models.join(", "));
                for w in p.workers {
                    println!("  {} {} slots={} {}", w.id, w.base_url, w.slots, w.state);
                }
            }
            Ok(())
        }
    }
}

pub fn run_worker(config: &Config, command: WorkerCommand) -> Result<(), CliError> {
    let mut conn = connect_current(config)?;
    let (worker, output) = match command {
        WorkerCommand::Add { pool, url, api_key_env, slots, output } => {
            config.require_auth_secrets()?;
            let master = MasterKey::from_config(&config.auth.master_key).map_err(|e| CliError::Usage(e.to_string()))?;
            let api_key = match api_key_env {
                Some(var) => Some(std::env::var(&var).map_err(|_| CliError::Usage(format!("--api-key-env: ${var} is not set")))?),
                None => None,
            };
            (workers::add_worker(&mut conn, &master, &pool, &AddWorkerRequest { base_url: url, api_key, slots }, &Actor::cli())?, output)
        }
        WorkerCommand::Drain { worker, output } => {
            (workers::set_worker_state(&mut conn, &worker, WorkerState::Draining, &Actor::cli())?, output)
        }
        WorkerCommand::Remove { worker, output } => {
            (workers::set_worker_state(&mut conn, &worker, WorkerState::Removed, &Actor::cli())?, output)
        }
    };
    if output.json {
        return print_json(&worker);
    }
    println!("worker {} {} ({} slots): {}", worker.id, worker.base_url, worker.slots, worker.state);
    Ok(())
}
