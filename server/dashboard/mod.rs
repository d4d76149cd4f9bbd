//! The admin dashboard under `/admin`: server-rendered askama pages (templates in
//! `templates/admin/`) and the static assets of `web/`, embedded in the binary. Sign-in by email
//! and password with server-side sessions (`session`), a synchronizer CSRF token on every form,
//! and pages for tenant admins (`tenant`, confined to their tenant) and operators (`operator`).
//! Every form calls the same `service` function as the matching `/api/v1` route; nothing here
//! validates or changes data on its own. Handlers build one template struct per page from
//! pre-formatted values: the templates only loop and branch.

pub mod assets;
pub mod charts;
pub mod chrome;
pub mod error;
pub mod login;
pub mod oidc;
pub mod operator;
pub mod session;
pub mod tenant;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, web};

pub use error::PageError;
pub use session::Session;

/// Mounts `/admin`. Pages are never cached (they carry CSRF tokens and shown-once secrets);
/// the assets set their own caching.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/admin/static").route("/{name}", web::get().to(assets::get_asset))).service(
        web::scope("/admin")
            // `same-origin`, not the server-wide `no-referrer`: under `no-referrer` browsers send
            // `Origin: null` with every form POST, and the Origin check could not tell this site
            // from any other.
            .wrap(DefaultHeaders::new().add(CacheControl(vec![CacheDirective::NoStore])).add(("Referrer-Policy", "same-origin")))
            .route("", web::get().to(login::get_home))
            .route("/", web::get().to(login::get_home))
            .route("/login", web::get().to(login::get_login))
            .route("/login", web::post().to(login::post_login))
            .app_data(web::Data::new(oidc::Provider::default()))
            .route("/login/oidc", web::get().to(oidc::start))
            .route("/login/oidc/callback", web::get().to(oidc::callback))
            .route("/logout", web::post().to(login::post_logout))
            .route("/settings", web::get().to(login::get_settings))
            .route("/settings/password", web::post().to(login::post_password))
            .configure(tenant::configure)
            .configure(operator::configure)
            .default_service(web::to(not_found)),
    );
}

/// Any other path under `/admin`: the one 404 page.
async fn not_found() -> Result<HttpResponse, PageError> {
    Err(PageError::NotFound)
}

/// A rendered page as `text/html`.
pub fn html(body: String) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(body)
}

/// 303 to a dashboard path (after a form that changed something).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, location.to_owned())).finish()
}

/// Whole numbers with thin grouping for people: 1234567 → "1,234,567".
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A time as the dashboard shows it (UTC, to the minute).
pub fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_grouped() {
        assert_eq!(super::grouped(0), "0");
        assert_eq!(super::grouped(999), "999");
        assert_eq!(super::grouped(1000), "1,000");
        assert_eq!(super::grouped(-1234567), "-1,234,567");
    }
}
