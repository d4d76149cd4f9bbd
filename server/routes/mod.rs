//! The one routing table. One file per resource; each handler is `verb_noun`.

pub mod api;
pub mod health;
pub mod oauth;
pub mod v1;

use actix_web::{HttpRequest, web};

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").get(health::get_healthz))
        .service(web::resource("/readyz").get(health::get_readyz))
        .service(web::resource("/metrics").get(health::get_metrics))
        .configure(oauth::configure)
        .service(web::scope("/v1").wrap(actix_web::middleware::from_fn(crate::extract::authenticate_v1)).configure(v1::configure))
        .service(web::scope("/api").configure(api::configure));
}

/// Fallback for paths no route matches: an error in the API's JSON shape, not an empty 404.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())))
}
