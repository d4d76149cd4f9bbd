//! The tenant overview: requests, tokens and audio seconds by model over the last 24 hours and
//! 30 days, error rate, queue-wait p95, an hourly chart, and consumption against each quota.
//! Every figure comes from the usage rollups.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{Duration, DurationRound, Utc};

use crate::dashboard::charts::{Bar, bar_chart};
use crate::dashboard::chrome::{self, Chrome};
use crate::dashboard::{PageError, Session, grouped};
use crate::db::usage;
use crate::metering::Period;
use crate::metering::report::GroupBy;
use crate::service::plans::PlanView;
use crate::state::AppState;

pub struct ModelRow {
    pub model: String,
    pub requests: String,
    pub tokens: String,
    pub audio_s: String,
    pub errors: String,
}

pub struct Window {
    pub label: &'static str,
    pub requests: String,
    pub tokens: String,
    pub audio_s: String,
    pub error_rate: String,
    pub models: Vec<ModelRow>,
}

pub struct QuotaBar {
    pub name: String,
    pub used: i64,
    pub limit: i64,
    pub text: String,
}

pub struct HourRow {
    pub hour: String,
    pub requests: String,
    pub tokens: String,
}

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    tenant_name: String,
    plan: String,
    windows: Vec<Window>,
    queue_p95: String,
    chart: String,
    hours: Vec<HourRow>,
    quotas: Vec<QuotaBar>,
}

fn window(label: &'static str, rows: Vec<crate::metering::report::UsageGroup>) -> Window {
    let (mut req, mut tok, mut audio, mut err) = (0i64, 0i64, 0i64, 0i64);
    let models = rows
        .into_iter()
        .map(|r| {
            req += r.requests;
            tok += r.prompt_tokens + r.completion_tokens;
            audio += r.audio_ms;
            err += r.errors;
            ModelRow {
                model: r.key,
                requests: grouped(r.requests),
                tokens: grouped(r.prompt_tokens + r.completion_tokens),
                audio_s: grouped(r.audio_ms / 1000),
                errors: grouped(r.errors),
            }
        })
        .collect();
    let error_rate = if req > 0 { format!("{:.2} %", err as f64 * 100.0 / req as f64) } else { "–".into() };
    Window { label, requests: grouped(req), tokens: grouped(tok), audio_s: grouped(audio / 1000), error_rate, models }
}

fn quota(name: &str, used: i64, limit: Option<i64>, unit: &str) -> Option<QuotaBar> {
    let limit = limit?;
    let pct = if limit > 0 { used as f64 * 100.0 / limit as f64 } else { 100.0 };
    Some(QuotaBar {
        name: name.to_owned(),
        used: used.min(limit.max(0)),
        limit: limit.max(1),
        text: format!("{} of {} {unit} ({pct:.0} %)", grouped(used), grouped(limit)),
    })
}

pub async fn get_overview(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let (tenant, view) = super::load(&state, &s, &path).await?;
    let tz: chrono_tz::Tz = view.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let now = Utc::now();
    let key = tenant.clone();
    let (day, month, hours, p95, totals, plan) = state
        .db
        .run(move |conn| {
            let day = usage::grouped(conn, &key, now - Duration::hours(24), now, GroupBy::Model)?;
            let month = usage::grouped(conn, &key, now - Duration::days(30), now, GroupBy::Model)?;
            let hours = crate::db::usage_views::hourly(conn, &key, now - Duration::hours(24), now)?;
            let p95 = crate::db::usage_views::queue_wait_p95_ms(conn, &key, now - Duration::hours(24), now)?;
            let totals = usage::period_totals(conn, &key, Period::Day.start(tz, now), Period::Month.start(tz, now))?;
            let t = crate::db::tenants::find(conn, &key)?;
            let plan = PlanView::from(crate::db::plans::find(conn, &crate::db::tenants::plan_id_of(&t))?);
            Ok((day, month, hours, p95, totals, plan))
        })
        .await?;
    // Every hour of the last 24 gets a bar, the quiet ones too.
    let this_hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    let bars: Vec<Bar> = (0..24)
        .rev()
        .map(|ago| {
            let hour = this_hour - Duration::hours(ago);
            let requests = hours.iter().find(|h| h.hour == hour).map_or(0, |h| h.requests);
            Bar { label: hour.format("%H:00").to_string(), value: requests as f64 }
        })
        .collect();
    let chart = bar_chart("Requests per hour, last 24 hours", &bars);
    let (d, m) = totals;
    let p = &plan.spec;
    let quotas = [
        quota("Tokens today", d.tokens, p.daily_token_quota, "tokens"),
        quota("Tokens this month", m.tokens, p.monthly_token_quota, "tokens"),
        quota("Requests today", d.requests, p.daily_request_quota, "requests"),
        quota("Requests this month", m.requests, p.monthly_request_quota, "requests"),
        quota("Audio today", d.audio_ms / 1000, p.daily_audio_seconds_quota, "s"),
        quota("Audio this month", m.audio_ms / 1000, p.monthly_audio_seconds_quota, "s"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let page = OverviewPage {
        chrome: Chrome::new(&s, &req, Some(&tenant), &format!("/admin/t/{tenant}")),
        tenant_name: view.name,
        plan: view.plan,
        windows: vec![window("Last 24 hours", day), window("Last 30 days", month)],
        queue_p95: p95.map_or_else(|| "–".into(), |ms| format!("{ms:.0} ms")),
        chart,
        hours: hours
            .into_iter()
            .map(|h| HourRow {
                hour: h.hour.format("%Y-%m-%d %H:00 UTC").to_string(),
                requests: grouped(h.requests),
                tokens: grouped(h.tokens),
            })
            .collect(),
        quotas,
    };
    chrome::render(&req, &page)
}
