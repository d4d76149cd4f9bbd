//! The OpenAPI 3.1 document of `/api/v1`, served at `/api/openapi.json`: generated from the
//! handlers' `#[utoipa::path]` annotations, with the error answers every operation shares added by
//! [`ErrorResponses`]. `tests/api/openapi.rs` holds it to the routing table
//! ([`super::route_list`]); the conformance suite validates it and fuzzes the API against it.

use actix_web::HttpResponse;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use super::{alerts, api_keys, clients, ip_rules, oauth_admin, plans, pools, signing_keys, tenants, usage};

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
    info(title = "Gatehouse management API", description = "Tenants, plans and limits, OAuth2 clients, API keys, revocation, signing keys, worker pools, usage and billing exports, alerts and their recipients, IP rules and bans."),
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
        usage::export_all_usage,
        alerts::list_alerts,
        alerts::list_recipients,
        alerts::add_recipient,
        alerts::remove_recipient,
        alerts::list_silences,
        alerts::add_silence,
        alerts::remove_silence,
        ip_rules::list_platform_rules,
        ip_rules::create_platform_rule,
        ip_rules::delete_platform_rule,
        ip_rules::list_tenant_rules,
        ip_rules::create_tenant_rule,
        ip_rules::delete_tenant_rule,
        ip_rules::list_bans,
        ip_rules::lift_ban,
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
        crate::service::plans::PlanSpec,
        crate::service::plans::PlanView,
        crate::service::plans::CredentialLimits,
        crate::metering::report::UsageRow,
        crate::metering::report::GroupBy,
        crate::db::alerts::AlertRow,
        crate::db::alerts::Recipient,
        crate::service::alerts::AddRecipientRequest,
        crate::service::alerts::SilenceRequest,
        crate::db::alerts::Silence,
        crate::db::ip_rules::IpRule,
        crate::db::ip_rules::IpBan,
        crate::service::ip_rules::CreateIpRuleRequest,
        crate::domain::prompt_rules::PackChoice,
        crate::domain::prompt_rules::RuleAction,
        crate::error::Body,
    )),
    modifiers(&SecurityAddon, &ErrorResponses),
    security(("management_token" = []))
)]
pub struct ApiDoc;

pub async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Error answers, the same on every operation. Each 4xx and 5xx answer carries an `ErrorBody`;
/// the ones any operation can give are added where its annotation does not list them: 401 (no
/// valid management token) and 503 (the database cannot answer) on every operation; 404 on every
/// operation with a path parameter; 400 (not JSON), 413 (too large), 415 (not
/// `application/json`) and 422 (a field breaks a rule, or is unknown) on every operation with a
/// JSON body; 400 and 422 on every operation with query parameters.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                let has_body = operation.request_body.is_some();
                let params = operation.parameters.as_deref().unwrap_or_default();
                let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let has_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
                let mut add = vec![401, 503];
                if has_path {
                    add.push(404);
                }
                if has_body {
                    add.extend([400, 413, 415, 422]);
                }
                if has_query {
                    add.extend([400, 422]);
                }
                let responses = &mut operation.responses.responses;
                for status in add {
                    responses.entry(status.to_string()).or_insert_with(|| RefOr::T(Response::new(describe(status))));
                }
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        if status.starts_with(['4', '5']) && response.content.is_empty() {
                            response.content.insert(
                                "application/json".into(),
                                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                            );
                        }
                        if response.description.is_empty() {
                            response.description = describe(status.parse().unwrap_or_default()).into();
                        }
                    }
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.options, &mut item.head, &mut item.patch, &mut item.trace]
        .into_iter()
        .filter_map(Option::as_mut)
}

fn describe(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "Done; no body",
        400 => "Malformed request: a body that is not JSON, or a query string that cannot be read",
        401 => "No valid management token (`Authorization: Bearer gth_mgmt_…`)",
        403 => "Operators only",
        404 => "Not found, or not the caller's to see",
        409 => "Conflicts with what exists",
        413 => "Body too large",
        415 => "The body is not `application/json`",
        422 => "A field is missing, unknown, or breaks a rule (`param` names it)",
        429 => "Too many at once; retry after `Retry-After` seconds",
        503 => "The database cannot answer right now; retry after `Retry-After` seconds",
        _ => "",
    }
}
