//! The dashboard's static files from `web/`, compiled into the binary: one file still runs
//! everything. Served with their content type, a strong ETag (SHA-256 of the bytes) and a day
//! of public caching; a matching `If-None-Match` gets 304.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use super::PageError;

/// (name, content type, bytes)
const ASSETS: [(&str, &str, &[u8]); 3] = [
    ("admin.css", "text/css; charset=utf-8", include_bytes!("../../web/admin.css")),
    ("admin.js", "text/javascript; charset=utf-8", include_bytes!("../../web/admin.js")),
    ("icon.svg", "image/svg+xml", include_bytes!("../../web/icon.svg")),
];

fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>())
}

pub async fn get_asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, PageError> {
    let (_, content_type, bytes) = ASSETS.iter().find(|(n, _, _)| *n == name.as_str()).ok_or(PageError::NotFound)?;
    let tag = etag(bytes);
    let cache = ("Cache-Control", "public, max-age=86400");
    let matches =
        req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if matches {
        return Ok(HttpResponse::NotModified().insert_header((header::ETAG, tag)).insert_header(cache).finish());
    }
    Ok(HttpResponse::Ok().content_type(*content_type).insert_header((header::ETAG, tag)).insert_header(cache).body(*bytes))
}
