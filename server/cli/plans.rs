//! `gatehouse plan create|update|list` and `gatehouse export usage`.

use std::io::Write;

use clap::{Args, Subcommand};

use super::{CliError, Output, connect_current, print_json};
use crate::config::Config;
use crate::db::usage;
use crate::metering::report::{EXPORT_PAGE_ROWS, ExportWriter, Format, Month};
use crate::service::Actor;
use crate::service::plans::{self, PlanSpec, PlanView};

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Create a plan (omitted limits are unlimited).
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: PlanSettings,
        #[command(flatten)]
        output: Output,
    },
    /// Change the given settings of a plan; the others stay. Takes effect within 5 s.
    Update {
        /// Plan name or id.
        plan: String,
        #[command(flatten)]
        settings: PlanSettings,
        #[command(flatten)]
        output: Output,
    },
    /// List plans.
    List {
        #[command(flatten)]
        output: Output,
    },
}

/// Plan settings as flags (see `PlanSpec` for their meaning).
#[derive(Debug, Clone, Default, Args)]
pub struct PlanSettings {
    #[arg(long)]
    requests_per_minute: Option<i32>,
    #[arg(long)]
    tokens_per_minute: Option<i64>,
    #[arg(long)]
    audio_seconds_per_minute: Option<i32>,
    #[arg(long)]
    concurrent_requests: Option<i32>,
    #[arg(long)]
    daily_token_quota: Option<i64>,
    #[arg(long)]
    monthly_token_quota: Option<i64>,
    #[arg(long)]
    monthly_token_soft_quota: Option<i64>,
    #[arg(long)]
    daily_request_quota: Option<i64>,
    #[arg(long)]
    monthly_request_quota: Option<i64>,
    #[arg(long)]
    daily_audio_seconds_quota: Option<i64>,
    #[arg(long)]
    monthly_audio_seconds_quota: Option<i64>,
    #[arg(long)]
    queue_weight: Option<i32>,
    #[arg(long)]
    max_tokens_cap: Option<i32>,
    #[arg(long)]
    default_max_tokens: Option<i32>,
    #[arg(long)]
    max_prompt_chars: Option<i32>,
    #[arg(long)]
    max_audio_bytes: Option<i64>,
    /// Allowed model (repeatable); `*` for all.
    #[arg(long = "model")]
    models: Vec<String>,
}

impl PlanSettings {
    fn apply(self, spec: &mut PlanSpec) {
        macro_rules! set {
            ($($f:ident),*) => { $( if self.$f.is_some() { spec.$f = self.$f; } )* };
        }
        set!(
            requests_per_minute,
            tokens_per_minute,
            audio_seconds_per_minute,
            concurrent_requests,
            daily_token_quota,
            monthly_token_quota,
            monthly_token_soft_quota,
            daily_request_quota,
            monthly_request_quota,
            daily_audio_seconds_quota,
            monthly_audio_seconds_quota,
            max_tokens_cap,
            default_max_tokens,
            max_prompt_chars
        );
        if let Some(w) = self.queue_weight {
            spec.queue_weight = w;
        }
        if let Some(b) = self.max_audio_bytes {
            spec.max_audio_bytes = b;
        }
        if !self.models.is_empty() {
            spec.allowed_models = self.models;
        }
    }
}

fn print_plan(plan: &PlanView, output: Output) -> Result<(), CliError> {
    if output.json {
        return print_json(plan);
    }
    let s = &plan.spec;
    let show = |v: Option<i64>| v.map_or("unlimited".to_owned(), |v| v.to_string());
    println!(
        "plan {} ({}): {} req/min, {} tokens/min, {} concurrent; monthly tokens {}; models {}",
        s.name,
        plan.id,
        show(s.requests_per_minute.map(i64::from)),
        show(s.tokens_per_minute),
        show(s.concurrent_requests.map(i64::from)),
        show(s.monthly_token_quota),
        s.allowed_models.join(", ")
    );
    Ok(())
}

pub fn run_plan(config: &Config, command: PlanCommand) -> Result<(), CliError> {
    let mut conn = connect_current(config)?;
    match command {
        PlanCommand::Create { name, settings, output } => {
            let defaults: PlanSpec = serde_json::from_value(serde_json::json!({ "name": name }))
                .map_err(|e| CliError::runtime(format!("plan defaults: {e}")))?;
            let mut spec = defaults;
            settings.apply(&mut spec);
            print_plan(&plans::create(&mut conn, &spec, &Actor::cli())?, output)
        }
        PlanCommand::Update { plan, settings, output } => {
            let current = plans::list(&mut conn)?
                .into_iter()
                .find(|p| p.id == plan || p.spec.name == plan)
                .ok_or_else(|| CliError::Usage(format!("no plan `{plan}`")))?;
            let mut spec = current.spec;
            settings.apply(&mut spec);
            print_plan(&plans::replace(&mut conn, &current.id, &spec, &Actor::cli())?, output)
        }
        PlanCommand::List { output } => {
            let list = plans::list(&mut conn)?;
            if output.json {
                return print_json(&list);
            }
            list.iter().try_for_each(|p| print_plan(p, output))
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Billing export of one month: the same bytes as `GET /api/v1/…/usage/export`.
    Usage {
        /// Tenant id or slug; omit with --all-tenants.
        #[arg(long, required_unless_present = "all_tenants")]
        tenant: Option<String>,
        /// Every tenant in one file.
        #[arg(long, conflicts_with = "tenant")]
        all_tenants: bool,
        /// Month, YYYY-MM (each tenant's time zone).
        #[arg(long)]
        period: String,
        /// csv or ndjson.
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

pub fn run_export(config: &Config, command: ExportCommand) -> Result<(), CliError> {
    let ExportCommand::Usage { tenant, all_tenants: _, period, format } = command;
    let month = Month::parse(&period).ok_or_else(|| CliError::Usage("--period must be a month, YYYY-MM".into()))?;
    let format = Format::parse(&format).ok_or_else(|| CliError::Usage("--format must be csv or ndjson".into()))?;
    let mut conn = connect_current(config)?;
    let tenant = match tenant {
        Some(t) => Some(super::tenant::resolve(&mut conn, &t)?.id()),
        None => None,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut writer = ExportWriter::new(format);
    let mut after = None;
    loop {
        let page = match &tenant {
            Some(t) => usage::export_page(&mut conn, t, month, after.as_ref(), EXPORT_PAGE_ROWS)?,
            None => usage::export_page_all_tenants(&mut conn, month, after.as_ref(), EXPORT_PAGE_ROWS)?,
        };
        let last_page = (page.len() as i64) < EXPORT_PAGE_ROWS;
        after = page.last().map(usage::ExportRow::cursor);
        let rows: Vec<_> = page.into_iter().map(usage::ExportRow::into_row).collect();
        let bytes = writer.page(&rows).map_err(|e| CliError::runtime(format!("writing the export: {e:#}")))?;
        out.write_all(&bytes).map_err(|e| CliError::runtime(format!("writing the export: {e}")))?;
        if last_page {
            break;
        }
    }
    out.flush().map_err(|e| CliError::runtime(format!("writing the export: {e}")))?;
    eprintln!("{} row(s) exported", writer.rows());
    Ok(())
}
