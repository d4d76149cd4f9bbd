//! Usage queries and billing exports: `GET /api/v1/tenants/{id}/usage` (JSON, grouped),
//! `GET /api/v1/tenants/{id}/usage/export` and, for operators, `GET /api/v1/usage/export` (all
//! tenants). Exports stream from the database row by row as `text/csv` or `application/x-ndjson`.

use std::io::Write;

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::db::tenants;
use crate::error::ApiError;
use crate::extract::Manager;
use crate::state::AppState;
use crate::usage::{Period, local_midnight};
use crate::usage_report::{self as report, Format, GroupBy, Month, UsageGroup};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenants/{tenant_id}/usage", web::get().to(get_usage))
        .route("/tenants/{tenant_id}/usage/export", web::get().to(export_usage))
        .route("/usage/export", web::get().to(export_all_usage));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// RFC 3339 instant or `YYYY-MM-DD` (midnight in the tenant's time zone). Default: the start
    /// of the current month.
    pub from: Option<String>,
    /// Exclusive; same forms. Default: now.
    pub to: Option<String>,
    /// `day` (default), `model` or `credential`.
    pub group_by: Option<GroupBy>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UsageResponse {
    pub tenant_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: String,
    pub data: Vec<UsageGroup>,
}

fn parse_instant(field: &'static str, value: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(|d| local_midnight(tz, d))
        .map_err(|_| ApiError::Validation { message: format!("`{field}` must be an RFC 3339 time or YYYY-MM-DD"), param: Some(field) })
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, body = UsageResponse), (status = 404), (status = 422)))]
pub async fn get_usage(
    manager: Manager,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let q = query.into_inner();
    let group_by = q.group_by.unwrap_or(GroupBy::Day);
    let id = tenant.clone();
    let t = state.db.run(move |conn| Ok(tenants::find(conn, &id)?)).await?;
    let tz: chrono_tz::Tz = t.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let now = Utc::now();
    let from = q.from.as_deref().map(|v| parse_instant("from", v, tz)).transpose()?.unwrap_or_else(|| Period::Month.start(tz, now));
    let to = q.to.as_deref().map(|v| parse_instant("to", v, tz)).transpose()?.unwrap_or(now);
    if to <= from {
        return Err(ApiError::Validation { message: "`to` must be after `from`".into(), param: Some("to") });
    }
    let key = tenant.to_string();
    let data = state.db.run(move |conn| Ok(report::query(conn, &key, from, to, group_by)?)).await?;
    let group_by = match group_by {
        GroupBy::Day => "day",
        GroupBy::Model => "model",
        GroupBy::Credential => "credential",
    };
    Ok(HttpResponse::Ok().json(UsageResponse { tenant_id: tenant.to_string(), from, to, group_by: group_by.into(), data }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Calendar month `YYYY-MM`, in each tenant's time zone.
    pub period: String,
    /// `csv` (default) or `ndjson`.
    pub format: Option<String>,
}

fn parse_export(q: &ExportQuery) -> Result<(Month, Format), ApiError> {
    let month = Month::parse(&q.period)
        .ok_or_else(|| ApiError::Validation { message: "`period` must be a month, YYYY-MM".into(), param: Some("period") })?;
    let format = Format::parse(q.format.as_deref().unwrap_or("csv"))
        .ok_or_else(|| ApiError::Validation { message: "`format` must be csv or ndjson".into(), param: Some("format") })?;
    Ok((month, format))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/usage/export", tag = "usage", params(ExportQuery),
    responses((status = 200, description = "CSV or NDJSON rows, streamed", body = [crate::usage_report::UsageRow]), (status = 404), (status = 422)))]
pub async fn export_usage(
    manager: Manager,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let (month, format) = parse_export(&query)?;
    let id = tenant.clone();
    state.db.run(move |conn| Ok(tenants::find(conn, &id)?)).await?;
    Ok(stream_export(&state, Some(tenant.to_string()), month, format, &query.period))
}

/// Operators: every tenant in one file.
#[utoipa::path(get, path = "/api/v1/usage/export", tag = "usage", params(ExportQuery),
    responses((status = 200, description = "CSV or NDJSON rows, streamed", body = [crate::usage_report::UsageRow]), (status = 403), (status = 422)))]
pub async fn export_all_usage(
    manager: Manager,
    state: web::Data<AppState>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let (month, format) = parse_export(&query)?;
    Ok(stream_export(&state, None, month, format, &query.period))
}

/// Sends what the export writes as response chunks of about 16 KiB; a client that goes away
/// stops the query.
struct ChunkWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 16 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

fn stream_export(state: &AppState, tenant: Option<String>, month: Month, format: Format, period: &str) -> HttpResponse {
    let (tx, rx) = mpsc::channel(4);
    let db = state.db.clone();
    let errors = tx.clone();
    tokio::spawn(async move {
        let result = db
            .run(move |conn| {
                let mut out = ChunkWriter { tx, buf: Vec::with_capacity(16 * 1024) };
                report::export(conn, tenant.as_deref(), month, format, &mut out)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "usage export failed");
            // Cut the response short so the client sees an incomplete transfer, not a short file.
            let _ = errors.send(Err(std::io::Error::other("export failed"))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header(("Content-Disposition", format!("attachment; filename=\"usage-{period}.{}\"", format.extension())))
        .streaming(stream)
}
