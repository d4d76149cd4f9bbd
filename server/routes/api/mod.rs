//! The management API under `/api/v1` (JSON, `Cache-Control: no-store`): tenants, OAuth2 clients,
//! API keys, token revocation and introspection, signing keys, worker pools, plans, usage, alerts. Operators see every tenant; a tenant
//! admin's token reaches only its own tenant, and anything else answers 404. The OpenAPI document
//! served at `/api/openapi.json` is generated from these handlers' annotations (`openapi`).

pub mod alerts;
pub mod api_keys;
pub mod clients;
pub mod ip_rules;
pub mod oauth_admin;
pub mod openapi;
pub mod plans;
pub mod pools;
pub mod signing_keys;
pub mod tenants;
pub mod usage;

use actix_web::http::Method;
use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::middleware::DefaultHeaders;
use actix_web::{FromRequest, Handler, HttpRequest, Responder, web};

use crate::extract::Manager;
use crate::service::Actor;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi::get_openapi)).service(
        web::scope("/v1")
            .wrap(actix_web::middleware::from_fn(crate::extract::authenticate_management))
            .wrap(DefaultHeaders::new().add(CacheControl(vec![CacheDirective::NoStore])))
            .configure(routes),
    );
}

/// Every `/api/v1` route, relative to `/api/v1`. Each module registers its routes here through a
/// [`RouteTable`], so the same list serves requests and, through [`route_list`], is what the
/// OpenAPI document is checked against.
pub fn routes<R: RouteTable>(table: &mut R) {
    tenants::configure(table);
    clients::configure(table);
    api_keys::configure(table);
    oauth_admin::configure(table);
    signing_keys::configure(table);
    pools::configure(table);
    plans::configure(table);
    usage::configure(table);
    alerts::configure(table);
    ip_rules::configure(table);
}

/// Where routes are registered: actix's `ServiceConfig` when serving, a [`RouteList`] when the
/// routes are listed.
pub trait RouteTable {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static;
}

impl RouteTable for web::ServiceConfig {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(path, web::method(method).to(handler))
    }
}

/// The routes as `(method, path under /api/v1)`, without their handlers.
#[derive(Debug, Default)]
pub struct RouteList(pub Vec<(Method, &'static str)>);

impl RouteTable for RouteList {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, _handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.0.push((method, path));
        self
    }
}

/// Every registered `/api/v1` route as `(method, full path)`, e.g. `(GET, "/api/v1/tenants")`:
/// the list `tests/api/openapi.rs` holds the OpenAPI document to.
pub fn route_list() -> Vec<(Method, String)> {
    let mut list = RouteList::default();
    routes(&mut list);
    list.0.into_iter().map(|(method, path)| (method, format!("/api/v1{path}"))).collect()
}

/// The audit actor for a management request.
pub fn actor(manager: &Manager, state: &AppState, req: &HttpRequest) -> Actor {
    Actor {
        kind: manager.actor_kind(),
        id: manager.actor_id(),
        source_ip: state.client_ip(req),
        request_id: crate::telemetry::current_request_id(),
    }
}
