//! `gatehouse tenant create|list|show|update|disable`.

use clap::Subcommand;
use diesel::PgConnection;

use super::{CliError, Output, connect_current, print_json};
use crate::config::Config;
use crate::db::tenants::{self, Tenant, TenantView};
use crate::domain::prompt_rules::{PackChoice, RuleAction};
use crate::domain::{Slug, TenantId};
use crate::service::tenants::{CreateTenantRequest, UpdateTenantRequest};
use crate::service::{self, Actor};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Display name, e.g. "Acme Corp".
        #[arg(long)]
        name: String,
        /// URL-safe handle; derived from the name when omitted.
        #[arg(long)]
        slug: Option<String>,
        /// IANA time zone for daily and monthly quota periods.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// Plan name.
        #[arg(long, default_value = "default")]
        plan: String,
        #[command(flatten)]
        output: Output,
    },
    /// List every tenant.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Show one tenant (by id or slug).
    Show {
        tenant: String,
        #[command(flatten)]
        output: Output,
    },
    /// Change a tenant (by id or slug): its plan, time zone, prompt rule packs or CORS origins.
    /// Omitted options stay as they are; a running server applies the change within its policy
    /// cache's lifetime.
    Update {
        tenant: String,
        /// Plan name.
        #[arg(long)]
        plan: Option<String>,
        /// IANA time zone for daily and monthly quota periods.
        #[arg(long)]
        time_zone: Option<String>,
        /// Prompt rule packs to enable, comma-separated, each optionally `:block` or `:flag`
        /// (e.g. `injection,jailbreak:flag`); replaces the list; `none` turns them all off.
        #[arg(long, value_name = "PACK[:ACTION],…")]
        prompt_rule_packs: Option<String>,
        /// An origin whose browser pages may call /v1 and /oauth2/token with this tenant's
        /// credentials, e.g. https://app.example.com (repeat it; replaces the list).
        #[arg(long = "cors-origin", value_name = "ORIGIN")]
        cors_origins: Vec<String>,
        /// Remove every CORS origin (CORS off for this tenant).
        #[arg(long, conflicts_with = "cors_origins")]
        no_cors_origins: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Disable a tenant: its credentials stop working (by id or slug).
    Disable {
        tenant: String,
        #[command(flatten)]
        output: Output,
    },
}

pub fn run(config: &Config, command: TenantCommand) -> Result<(), CliError> {
    match command {
        TenantCommand::Create { name, slug, time_zone, plan, output } => {
            let mut conn = connect_current(config)?;
            let req = CreateTenantRequest { name, slug, time_zone: Some(time_zone), plan: Some(plan) };
            let view = service::tenants::create(&mut conn, &req, &Actor::cli())?;
            if output.json {
                print_json(&view)
            } else {
                println!("created tenant {} ({}) with id {}", view.name, view.slug, view.id);
                Ok(())
            }
        }
        TenantCommand::List { output } => {
            let mut conn = connect_current(config)?;
            let list = tenants::list_all(&mut conn)?;
            if output.json {
                return print_json(&list);
            }
            println!("{:<27} {:<24} {:<9} {:<12} NAME", "ID", "SLUG", "STATUS", "PLAN");
            for t in list {
                println!("{:<27} {:<24} {:<9} {:<12} {}", t.id, t.slug, t.status, t.plan, t.name);
            }
            Ok(())
        }
        TenantCommand::Show { tenant, output } => {
            let mut conn = connect_current(config)?;
            let found = resolve(&mut conn, &tenant)?;
            let view = tenants::find_view(&mut conn, &found.id())?;
            if output.json {
                print_json(&view)
            } else {
                print_human(&view);
                Ok(())
            }
        }
        TenantCommand::Update { tenant, plan, time_zone, prompt_rule_packs, cors_origins, no_cors_origins, output } => {
            let prompt_rule_packs = prompt_rule_packs.as_deref().map(parse_pack_choices).transpose()?;
            let mut conn = connect_current(config)?;
            let found = resolve(&mut conn, &tenant)?;
            let cors_origins = if no_cors_origins || !cors_origins.is_empty() { Some(cors_origins) } else { None };
            let req = UpdateTenantRequest { plan, time_zone, prompt_deny_patterns: None, prompt_rule_packs, cors_origins };
            let view = service::tenants::update(&mut conn, &found.id(), &req, &Actor::cli())?;
            if output.json {
                print_json(&view)
            } else {
                print_human(&view);
                Ok(())
            }
        }
        TenantCommand::Disable { tenant, output } => {
            let mut conn = connect_current(config)?;
            let found = resolve(&mut conn, &tenant)?;
            let was_active = found.status() == crate::domain::TenantStatus::Active;
            let view = service::tenants::disable(&mut conn, &found.id(), &Actor::cli())?;
            if output.json {
                print_json(&view)
            } else {
                println!("tenant {} is {}", view.slug, if was_active { "now disabled" } else { "already disabled" });
                Ok(())
            }
        }
    }
}

/// `injection,jailbreak:flag` → the choices; `none` (or nothing) → no pack. Pack names are
/// checked by the service, which lists the known ones.
pub fn parse_pack_choices(list: &str) -> Result<Vec<PackChoice>, CliError> {
    let list = list.trim();
    if list.is_empty() || list == "none" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|item| {
            let (pack, action) = match item.trim().split_once(':') {
                Some((pack, action)) => (pack, Some(action)),
                None => (item.trim(), None),
            };
            let action = match action {
                None => None,
                Some("block") => Some(RuleAction::Block),
                Some("flag") => Some(RuleAction::Flag),
                Some(other) => {
                    return Err(CliError::Usage(format!("`{other}` is not an action for pack `{pack}`: use `block` or `flag`")));
                }
            };
            Ok(PackChoice { pack: pack.to_owned(), action })
        })
        .collect()
}

/// Finds a tenant by id (`ten_…`) or slug.
pub fn resolve(conn: &mut PgConnection, key: &str) -> Result<Tenant, CliError> {
    let found = if key.starts_with("ten_") {
        let id = TenantId::parse(key).map_err(|e| CliError::Usage(e.to_string()))?;
        tenants::find(conn, &id)
    } else {
        let slug = Slug::parse(key).map_err(|e| CliError::Usage(e.to_string()))?;
        tenants::find_by_slug(conn, &slug)
    };
    found.map_err(|e| match e {
        diesel::result::Error::NotFound => CliError::runtime(format!("no tenant `{key}`")),
        other => other.into(),
    })
}

fn print_human(t: &TenantView) {
    println!("id:         {}", t.id);
    println!("slug:       {}", t.slug);
    println!("name:       {}", t.name);
    println!("status:     {}", t.status);
    println!("plan:       {}", t.plan);
    println!("time zone:  {}", t.time_zone);
    let packs: Vec<String> = t
        .prompt_rule_packs
        .iter()
        .map(|c| match c.action {
            Some(a) => format!("{}:{}", c.pack, a.as_str()),
            None => c.pack.clone(),
        })
        .collect();
    println!("rule packs: {}", if packs.is_empty() { "none".to_owned() } else { packs.join(", ") });
    if !t.cors_origins.is_empty() {
        println!("cors:       {}", t.cors_origins.join(", "));
    }
    println!("created at: {}", t.created_at.to_rfc3339());
    if let Some(at) = t.disabled_at {
        println!("disabled:   {}", at.to_rfc3339());
    }
}
