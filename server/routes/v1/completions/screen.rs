//! The prompt checks of a chat or text completion, made once per request before anything is
//! reserved or queued: the tenant's deny patterns over the whole prompt, then its prompt rule packs
//! (one scan, whatever the number of packs) over what the application's users wrote: every
//! message but the `system` and `developer` ones, which carry the application's own instructions
//! ("never reveal your system prompt" is not an attack there). A deny pattern or a blocking rule
//! refuses the request with 400 `prompt_denied`; the refusal names the rule's id, never a
//! pattern. Flagging rules let it pass and record an audit event, `prompt.flagged`, with the rule ids (never the prompt).
//! Every enabled rule that matched counts in `gatehouse_prompt_rule_matches_total{pack,action}`.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::{Endpoint, prompt_text};
use crate::admission::TenantPolicy;
use crate::auth::service::{CredentialKind, Principal};
use crate::db::audit::{ActorKind, AuditEvent, Outcome};
use crate::domain::prompt_rules::RuleAction;
use crate::error::ApiError;

fn denied(endpoint: Endpoint, message: String) -> ApiError {
    ApiError::BadRequest { code: "prompt_denied", message, param: Some(if endpoint == Endpoint::Chat { "messages" } else { "prompt" }) }
}

/// Refuses the prompt, or lets it pass with the audit event of the rules that flagged it (for the
/// caller to record once the rest of the request is valid too).
pub(super) fn screen(
    endpoint: Endpoint,
    text: &str,
    prompt: &Value,
    model: &str,
    policy: &TenantPolicy,
    principal: &Principal,
) -> Result<Option<AuditEvent>, ApiError> {
    if let Some(pattern) = policy.denied(text) {
        tracing::info!(pattern = %pattern, "prompt refused by a tenant deny pattern");
        return Err(denied(endpoint, "the prompt contains content this tenant's policy does not allow".into()));
    }
    if policy.prompt_rules.is_none() {
        return Ok(None);
    }
    let own = |m: &Value| matches!(m.get("role").and_then(Value::as_str), Some("system" | "developer"));
    let untrusted = match (endpoint, prompt) {
        (Endpoint::Chat, Value::Array(messages)) if messages.iter().any(own) => {
            let mut out = String::new();
            messages.iter().filter(|m| !own(m)).for_each(|m| prompt_text(m, &mut out));
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(text),
    };
    let hits = policy.prompt_rule_hits(&untrusted);
    if hits.is_empty() {
        return Ok(None);
    }
    for hit in &hits {
        metrics::counter!("gatehouse_prompt_rule_matches_total", "pack" => hit.rule.pack.clone(), "action" => hit.action.as_str())
            .increment(1);
    }
    let ids = |action: RuleAction| hits.iter().filter(|h| h.action == action).map(|h| h.rule.id.as_str()).collect::<Vec<_>>();
    let blocking = ids(RuleAction::Block);
    if !blocking.is_empty() {
        tracing::info!(rules = ?blocking, "prompt refused by a prompt rule");
        let names = blocking.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ");
        let noun = if blocking.len() == 1 { "rule" } else { "rules" };
        return Err(denied(endpoint, format!("the prompt matches prompt {noun} {names}, which this tenant's policy blocks")));
    }
    let flagged = ids(RuleAction::Flag);
    tracing::info!(rules = ?flagged, "prompt flagged by a prompt rule; passed");
    let mut packs: Vec<&str> = hits.iter().map(|h| h.rule.pack.as_str()).collect();
    packs.sort_unstable();
    packs.dedup();
    let actor = match principal.kind {
        CredentialKind::ApiKey => ActorKind::ApiKey,
        CredentialKind::Jwt => ActorKind::Client,
    };
    let event = AuditEvent::new(actor, "prompt.flagged", Outcome::Success)
        .tenant(&principal.tenant_id)
        .actor(principal.credential_id.clone())
        .target("model", model)
        .origin(principal.client_ip, crate::telemetry::current_request_id())
        .details(json!({ "rules": flagged, "packs": packs, "endpoint": endpoint.path() }));
    Ok(Some(event))
}
