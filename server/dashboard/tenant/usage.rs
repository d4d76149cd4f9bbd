//! Usage: a date range grouped by day, model or credential, as a chart with a table beneath,
//! and the monthly billing export (CSV or NDJSON) streamed by the same code as
//! `/api/v1/tenants/{id}/usage/export`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::Deserialize;

use crate::dashboard::charts::{Bar, bar_chart};
use crate::dashboard::chrome::{self, Chrome, Errors};
use crate::dashboard::{PageError, Session, grouped};
use crate::metering::local_midnight;
use crate::metering::report::{Format, GroupBy, Month};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Option<String>,
}

pub struct UsageRowView {
    pub key: String,
    pub requests: String,
    pub errors: String,
    pub prompt_tokens: String,
    pub completion_tokens: String,
    pub audio_s: String,
}

#[derive(Template)]
#[template(path = "admin/usage.html")]
struct UsagePage {
    chrome: Chrome,
    base: String,
    from: String,
    to: String,
    group_by: String,
    errors: Errors,
    chart: String,
    rows: Vec<UsageRowView>,
    month: String,
}

fn parse_day(field: &'static str, raw: &str, errors: &mut Errors) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            errors.add(field, "must be a date, YYYY-MM-DD");
            None
        }
    }
}

pub async fn get_usage(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, PageError> {
    let (tenant, view) = super::load(&state, &s, &path).await?;
    let tz: chrono_tz::Tz = view.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let today = Utc::now().with_timezone(&tz).date_naive();
    let q = query.into_inner();
    let from = q.from.unwrap_or_else(|| today.with_day(1).unwrap_or(today).format("%Y-%m-%d").to_string());
    let to = q.to.unwrap_or_else(|| today.format("%Y-%m-%d").to_string());
    let group_by = q.group_by.unwrap_or_else(|| "day".into());
    let mut errors = Errors::default();
    let group = match group_by.as_str() {
        "day" => Some(GroupBy::Day),
        "model" => Some(GroupBy::Model),
        "credential" => Some(GroupBy::Credential),
        _ => {
            errors.add("group_by", "must be day, model or credential");
            None
        }
    };
    let (start, end) = (parse_day("from", &from, &mut errors), parse_day("to", &to, &mut errors));
    if let (Some(a), Some(b)) = (start, end) {
        if b < a {
            errors.add("to", "must not be before the start date");
        } else if (b - a).num_days() > 400 {
            errors.add("to", "the range may span at most 400 days");
        }
    }
    let base = format!("/admin/t/{tenant}/usage");
    let chrome = Chrome::new(&s, &req, Some(&tenant), &base);
    let month = today.format("%Y-%m").to_string();
    let (Some(group), Some(start), Some(end), true) = (group, start, end, errors.is_empty()) else {
        let page = UsagePage { chrome, base, from, to, group_by, errors, chart: String::new(), rows: Vec::new(), month };
        return chrome::render_status(&req, StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    // `to` is the last day shown, inclusive.
    let (a, b) = (local_midnight(tz, start), local_midnight(tz, end + Duration::days(1)));
    let key = tenant.clone();
    let data = state.db.run(move |conn| Ok(crate::db::usage::grouped(conn, &key, a, b, group)?)).await?;
    let chart = if data.is_empty() {
        String::new()
    } else {
        let bars: Vec<Bar> = data.iter().map(|g| Bar { label: g.key.clone(), value: g.requests as f64 }).collect();
        bar_chart("Requests", &bars)
    };
    let rows = data
        .into_iter()
        .map(|g| UsageRowView {
            key: g.key,
            requests: grouped(g.requests),
            errors: grouped(g.errors),
            prompt_tokens: grouped(g.prompt_tokens),
            completion_tokens: grouped(g.completion_tokens),
            audio_s: grouped(g.audio_ms / 1000),
        })
        .collect();
    chrome::render(&req, &UsagePage { chrome, base, from, to, group_by, errors, chart, rows, month })
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    pub period: String,
    pub format: Option<String>,
}

pub async fn export_usage(
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, PageError> {
    let (tenant, _) = super::load(&state, &s, &path).await?;
    let month = Month::parse(&query.period).ok_or_else(|| PageError::BadRequest("The period must be a month, YYYY-MM.".into()))?;
    let format = Format::parse(query.format.as_deref().unwrap_or("csv"))
        .ok_or_else(|| PageError::BadRequest("The format must be csv or ndjson.".into()))?;
    Ok(crate::routes::api::usage::stream_export(&state, Some(tenant), month, format, &query.period)?)
}
