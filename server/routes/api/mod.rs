//! The management API under `/api/v1` (JSON, `Cache-Control: no-store`): tenants, OAuth2 clients,
//! API keys, token revocation and introspection, signing keys, worker pools, plans, usage, alerts. Operators see every tenant; a tenant
//! admin's token reaches only its own tenant, and anything else answers 404. The OpenAPI document
//! served at `/api/openapi.json` is generated from these handlers' annotations.

pub mod alerts;
pub mod api_keys;
pub mod clients;
pub mod oauth_admin;
pub mod plans;
pub mod pools;
pub mod signing_keys;
pub mod tenants;
pub mod usage;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::extract::Manager;
use crate::service::Actor;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(get_openapi)).service(
        web::scope("/v1")
            .wrap(actix_web::middleware::from_fn(crate::extract::authenticate_management))
            .wrap(DefaultHeaders::new().add(CacheControl(vec![CacheDirective::NoStore])))
            .configure(tenants::configure)
            .configure(clients::configure)
            .configure(api_keys::configure)
            .configure(oauth_admin::configure)
            .configure(signing_keys::configure)
            .configure(pools::configure)
            .configure(plans::configure)
            .configure(usage::configure)
            .configure(alerts::configure),
    );
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

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "management_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("gth_mgmt_… token")).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Gatehouse management API", description = "Tenants, plans and limits, OAuth2 clients, API keys, revocation, signing keys, worker pools, usage and billing exports, alerts and their recipients."),
    paths(
        tenants::list_tenants,
        tenants::create_tenant,
        tenants::get_tenant,
        tenants::disable_tenant,
        clients::create_client,
        clients::list_clients,
        clients::get_client,
        clients::update_client,
        clients::disable_client,
        clients::rotate_client_secret,
        api_keys::create_api_key,
        api_keys::list_api_keys,
        api_keys::get_api_key,
        api_keys::revoke_api_key,
        api_keys::roll_api_key,
        oauth_admin::revoke_client_tokens,
        oauth_admin::revoke_token,
        oauth_admin::introspect_token,
        signing_keys::list_signing_keys,
        signing_keys::rotate_signing_keys,
        pools::list_pools,
        pools::create_pool,
        pools::add_worker,
        pools::drain_worker,
        pools::remove_worker,
        tenants::update_tenant,
        plans::list_plans,
        plans::create_plan,
        plans::replace_plan,
        plans::set_api_key_limits,
        plans::set_client_limits,
        usage::get_usage,
        usage::export_usage,
        alerts::list_alerts,
        alerts::list_recipients,
        alerts::add_recipient,
        alerts::remove_recipient,
        alerts::list_silences,
        alerts::add_silence,
        alerts::remove_silence,
    ),
    components(schemas(
        crate::db::tenants::TenantView,
        crate::service::tenants::CreateTenantRequest,
        crate::service::clients::CreateClientRequest,
        crate::service::clients::UpdateClientRequest,
        crate::service::clients::RotateSecretRequest,
        crate::service::clients::ClientResponse,
        crate::service::clients::ClientWithSecret,
        crate::service::api_keys::CreateApiKeyRequest,
        crate::service::api_keys::RollApiKeyRequest,
        crate::service::api_keys::ApiKeyResponse,
        crate::service::api_keys::ApiKeyWithSecret,
        crate::db::signing_keys::SigningKeyView,
        oauth_admin::RevokeRequest,
        oauth_admin::IntrospectRequest,
        crate::service::workers::CreatePoolRequest,
        crate::service::workers::AddWorkerRequest,
        crate::service::workers::PoolResponse,
        crate::service::workers::WorkerResponse,
        crate::service::tenants::UpdateTenantRequest,
        crate::domain::prompt_rules::PackChoice,
        crate::domain::prompt_rules::RuleAction,
        crate::service::plans::PlanSpec,
        crate::service::plans::PlanView,
        crate::service::plans::CredentialLimits,
        crate::metering::report::UsageRow,
        crate::db::alerts::AlertRow,
        crate::db::alerts::Recipient,
        crate::service::alerts::AddRecipientRequest,
        crate::service::alerts::SilenceRequest,
        crate::db::alerts::Silence,
    )),
    modifiers(&SecurityAddon),
    security(("management_token" = []))
)]
pub struct ApiDoc;

async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
