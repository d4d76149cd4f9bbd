//! Usage queries and billing exports: `GET /api/v1/tenants/{id}/usage` (JSON, grouped),
//! `GET /api/v1/tenants/{id}/usage/export` and, for operators, `GET /api/v1/usage/export` (all
//! tenants). Exports are read a page at a time and streamed as `text/csv` or
//! `application/x-ndjson`: a slow download holds a page of memory and an export slot (at most
//! `usage.max_exports_per_tenant` per tenant), never a database connection or a thread.

use std::time::Duration;

use actix_web::http::Method;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::RouteTable;
use crate::db::tenants;
use crate::db::usage::{self, ExportCursor, ExportRow};
use crate::domain::TenantId;
use crate::error::ApiError;
use crate::extract::Manager;
use crate::metering::report::{EXPORT_PAGE_ROWS, ExportWriter, Format, GroupBy, Month, UsageGroup};
use crate::metering::{Period, local_midnight};
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::GET, "/tenants/{tenant_id}/usage", get_usage).add(Method::GET, "/tenants/{tenant_id}/usage/export", export_usage).add(
        Method::GET,
        "/usage/export",
        export_all_usage,
    );
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
    pub group_by: GroupBy,
    pub data: Vec<UsageGroup>,
}

fn parse_instant(field: &'static str, value: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map(|d| local_midnight(tz, d)).map_err(|_| ApiError::Validation {
        code: "invalid_value",
        message: format!("`{field}` must be an RFC 3339 time or YYYY-MM-DD"),
        param: Some(field),
    })
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
        return Err(ApiError::Validation { code: "invalid_value", message: "`to` must be after `from`".into(), param: Some("to") });
    }
    let key = tenant.clone();
    let data = state.db.run(move |conn| Ok(usage::grouped(conn, &key, from, to, group_by)?)).await?;
    Ok(HttpResponse::Ok().json(UsageResponse { tenant_id: tenant.to_string(), from, to, group_by, data }))
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
    let month = Month::parse(&q.period).ok_or_else(|| ApiError::Validation {
        code: "invalid_value",
        message: "`period` must be a month, YYYY-MM".into(),
        param: Some("period"),
    })?;
    let format = Format::parse(q.format.as_deref().unwrap_or("csv")).ok_or_else(|| ApiError::Validation {
        code: "invalid_value",
        message: "`format` must be csv or ndjson".into(),
        param: Some("format"),
    })?;
    Ok((month, format))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/usage/export", tag = "usage", params(ExportQuery),
    responses((status = 200, description = "`UsageRow`s, streamed as an attachment: CSV with a header line (`format=csv`) or one JSON object a line (`format=ndjson`)", content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 404), (status = 422), (status = 429, description = "too many exports of this tenant are running")))]
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
    stream_export(&state, Some(tenant), month, format, &query.period)
}

/// Operators: every tenant in one file.
#[utoipa::path(get, path = "/api/v1/usage/export", tag = "usage", params(ExportQuery),
    responses((status = 200, description = "`UsageRow`s, streamed as an attachment: CSV with a header line (`format=csv`) or one JSON object a line (`format=ndjson`)", content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 403), (status = 422), (status = 429, description = "too many exports are running")))]
pub async fn export_all_usage(
    manager: Manager,
    state: web::Data<AppState>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let (month, format) = parse_export(&query)?;
    stream_export(&state, None, month, format, &query.period)
}

/// Streams an export page by page. Each page is one short query (a pooled connection for its
/// duration only); the next page is read once the client has taken the previous one, so a slow
/// client slows its own export and nothing else.
pub fn stream_export(
    state: &AppState,
    tenant: Option<TenantId>,
    month: Month,
    format: Format,
    period: &str,
) -> Result<HttpResponse, ApiError> {
    let key = tenant.as_ref().map_or("*", TenantId::as_str).to_owned();
    let slot = state.exports.try_take(&key).map_err(|_| ApiError::RateLimited {
        message: "too many usage exports are running; retry when one finishes".into(),
        retry_after: Duration::from_secs(5),
        code: "too_many_exports",
    })?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let db = state.db.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let mut writer = ExportWriter::new(format);
        let mut after: Option<ExportCursor> = None;
        loop {
            let (t, cursor) = (tenant.clone(), after.clone());
            let page = db
                .run(move |conn| {
                    Ok(match &t {
                        Some(t) => usage::export_page(conn, t, month, cursor.as_ref(), EXPORT_PAGE_ROWS)?,
                        None => usage::export_page_all_tenants(conn, month, cursor.as_ref(), EXPORT_PAGE_ROWS)?,
                    })
                })
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "usage export failed");
                    // Cut the response short so the client sees an incomplete transfer, not a short file.
                    let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                    return;
                }
            };
            let last_page = (page.len() as i64) < EXPORT_PAGE_ROWS;
            after = page.last().map(ExportRow::cursor);
            let rows: Vec<_> = page.into_iter().map(ExportRow::into_row).collect();
            let chunk = match writer.page(&rows) {
                Ok(bytes) => Bytes::from(bytes),
                Err(e) => {
                    tracing::warn!(error = %e, "usage export failed");
                    let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                    return;
                }
            };
            if (!chunk.is_empty() && tx.send(Ok(chunk)).await.is_err()) || last_page {
                return; // done, or the client went away
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header(("Content-Disposition", format!("attachment; filename=\"usage-{period}.{}\"", format.extension())))
        .streaming(stream))
}
