//! `OptionalJson<T>`: a JSON body that may be left out. actix's `Option<web::Json<T>>` reads any
//! body it cannot parse as "no body", so a typo would silently take the defaults; here a request
//! without a body (or with the JSON `null`) gives `None`, and a body that is there must be valid
//! (`web::Json`'s errors: 400 not JSON, 413 too large, 415 not `application/json`, 422 a bad
//! field).

use std::future::{Ready, ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T> OptionalJson<T> {
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

/// Whether the request announces a body: a non-zero `Content-Length`, or a chunked one.
fn has_body(req: &HttpRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(TRANSFER_ENCODING)
        || headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > 0)
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::Either<Ready<Result<Self, Self::Error>>, Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !has_body(req) {
            return futures_util::future::Either::Left(ready(Ok(OptionalJson(None))));
        }
        let json = web::Json::<Option<T>>::from_request(req, payload);
        futures_util::future::Either::Right(Box::pin(async move { Ok(OptionalJson(json.await?.into_inner())) }))
    }
}
