//! RFC 9068 access tokens: issuing (header `typ: at+jwt` + `kid`, signed by the active key) and
//! verification in the order docs/auth.md gives for the resource server (signature, issuer,
//! audience, lifetime). Credential state and scopes are checked by the caller.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::keys::KeySet;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_S: i64 = 30;
/// The longest lifetime a token may claim.
pub const MAX_LIFETIME_S: i64 = 3600;
/// Longest bearer value accepted (RFC 6750 tokens are small; ours are ~500 bytes).
pub const MAX_TOKEN_LEN: usize = 8192;

/// One audience or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// The claims of our access tokens; all required and typed (deserialization fails otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub tenant_id: String,
}

impl AccessClaims {
    /// The RFC 7662 response for an active token.
    pub fn introspection(&self) -> Introspection {
        Introspection {
            active: true,
            scope: Some(self.scope.clone()),
            client_id: Some(self.client_id.clone()),
            sub: Some(self.sub.clone()),
            aud: Some(self.aud.clone()),
            iss: Some(self.iss.clone()),
            exp: Some(self.exp),
            iat: Some(self.iat),
            nbf: Some(self.nbf),
            jti: Some(self.jti.clone()),
            token_type: Some("Bearer"),
            tenant_id: Some(self.tenant_id.clone()),
        }
    }
}

/// An RFC 7662 introspection answer: `{"active": false}`, or `active: true` with the token's
/// claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

impl Introspection {
    pub fn inactive() -> Introspection {
        Introspection {
            active: false,
            scope: None,
            client_id: None,
            sub: None,
            aud: None,
            iss: None,
            exp: None,
            iat: None,
            nbf: None,
            jti: None,
            token_type: None,
            tenant_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no signing key is active")]
    NoActiveKey,
    #[error("token is malformed")]
    Malformed,
    #[error("token header is not acceptable")]
    BadHeader,
    #[error("token signing key is unknown")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token claims are invalid")]
    BadClaims,
}

pub fn sign(keys: &KeySet, claims: &AccessClaims) -> Result<String, TokenError> {
    let active = keys.active.as_ref().ok_or(TokenError::NoActiveKey)?;
    let header = serde_json::json!({ "alg": active.alg.as_str(), "typ": "at+jwt", "kid": active.kid });
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::BadClaims)?;
    let mut token = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload));
    let signature = active.signer.sign(token.as_bytes()).map_err(|_| TokenError::NoActiveKey)?;
    token.push('.');
    token.push_str(&B64.encode(signature));
    Ok(token)
}

/// Header members that would let a token choose its own key or processing (RFC 8725 §3.10).
const FORBIDDEN_HEADER_MEMBERS: [&str; 6] = ["jku", "x5u", "jwk", "x5c", "crit", "zip"];

/// Verifies a compact JWS access token: header policy, signature with the key bound to its
/// `kid` (the header never picks the algorithm), then the claims.
pub fn verify(keys: &KeySet, token: &str, issuer: &str, audience: &str, now: i64) -> Result<AccessClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let header: Map<String, Value> =
        B64.decode(header_b64).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).ok_or(TokenError::Malformed)?;
    if FORBIDDEN_HEADER_MEMBERS.iter().any(|m| header.contains_key(*m)) {
        return Err(TokenError::BadHeader);
    }
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default();
    if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
        return Err(TokenError::BadHeader);
    }
    let kid = header.get("kid").and_then(Value::as_str).ok_or(TokenError::BadHeader)?;
    if kid.is_empty() || kid.len() > 64 {
        return Err(TokenError::BadHeader);
    }
    let key = keys.verify.get(kid).ok_or(TokenError::UnknownKey)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if alg != format!("{:?}", key.alg) {
        return Err(TokenError::BadHeader);
    }

    let mut validation = Validation::new(key.alg);
    validation.leeway = LEEWAY_S as u64;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => TokenError::BadSignature,
            K::ExpiredSignature => TokenError::Expired,
            K::ImmatureSignature => TokenError::NotYetValid,
            K::InvalidAlgorithm => TokenError::BadHeader,
            K::Base64(_) | K::Json(_) | K::Utf8(_) | K::InvalidToken => TokenError::Malformed,
            _ => TokenError::BadClaims,
        }
    })?;
    let c = data.claims;
    // jsonwebtoken checks exp/nbf (with leeway), iss and aud; the rest is RFC 9068 and ours.
    if c.iss != issuer || !c.aud.contains(audience) {
        return Err(TokenError::BadClaims);
    }
    if c.iat > now + LEEWAY_S {
        return Err(TokenError::NotYetValid);
    }
    if c.exp - c.iat > MAX_LIFETIME_S || c.exp < c.iat {
        return Err(TokenError::BadClaims);
    }
    if c.jti.is_empty() || c.jti.len() > 64 || c.sub != c.client_id || c.scope.len() > 1024 {
        return Err(TokenError::BadClaims);
    }
    if crate::domain::TenantId::parse(&c.tenant_id).is_err() || crate::domain::ClientId::parse(&c.client_id).is_err() {
        return Err(TokenError::BadClaims);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{KeyState, LoadedKey, generate};
    use crate::config::SigningAlg;
    use crate::domain::{ClientId, TenantId};

    const ISS: &str = "https://api.example.com";
    const AUD: &str = "https://api.example.com/v1";

    fn keyset() -> KeySet {
        let k = generate(SigningAlg::ES256).unwrap();
        KeySet::build(vec![LoadedKey {
            kid: k.kid,
            alg: k.alg,
            state: KeyState::Active,
            public_jwk: k.public_jwk,
            active_pkcs8: Some(k.pkcs8),
        }])
        .unwrap()
    }

    fn claims(now: i64) -> AccessClaims {
        let client = ClientId::generate().to_string();
        AccessClaims {
            iss: ISS.into(),
            sub: client.clone(),
            aud: Audience::One(AUD.into()),
            exp: now + 900,
            iat: now,
            nbf: now,
            jti: crate::domain::random_base62(22),
            client_id: client,
            scope: "models:read".into(),
            tenant_id: TenantId::generate().to_string(),
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// Re-signs arbitrary header and claims with the active key (for claim-level negative cases).
    fn forge(keys: &KeySet, header: Value, claims: &Value) -> String {
        let active = keys.active.as_ref().unwrap();
        let body = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = active.signer.sign(body.as_bytes()).unwrap();
        format!("{body}.{}", B64.encode(sig))
    }

    fn header(keys: &KeySet) -> Value {
        serde_json::json!({ "alg": "ES256", "typ": "at+jwt", "kid": keys.active.as_ref().unwrap().kid })
    }

    #[test]
    fn a_signed_token_verifies_with_all_claims() {
        let keys = keyset();
        let c = claims(now());
        let token = sign(&keys, &c).unwrap();
        assert_eq!(verify(&keys, &token, ISS, AUD, now()).unwrap(), c);
    }

    #[test]
    fn typ_must_be_at_jwt() {
        let keys = keyset();
        let c = serde_json::to_value(claims(now())).unwrap();
        for typ in [Value::from("JWT"), Value::Null] {
            let mut h = header(&keys);
            h["typ"] = typ;
            assert_eq!(verify(&keys, &forge(&keys, h, &c), ISS, AUD, now()), Err(TokenError::BadHeader));
        }
        let mut h = header(&keys);
        h["typ"] = "application/AT+JWT".into();
        assert!(verify(&keys, &forge(&keys, h, &c), ISS, AUD, now()).is_ok(), "typ is case-insensitive");
    }

    #[test]
    fn wrong_audience_is_rejected() {
        let keys = keyset();
        let mut c = serde_json::to_value(claims(now())).unwrap();
        c["aud"] = "https://other.example.com/v1".into();
        assert_eq!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, now()), Err(TokenError::BadClaims));
        c["aud"] = serde_json::json!(["https://other.example.com", AUD]);
        assert!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, now()).is_ok(), "an array containing it is fine");
    }

    #[test]
    fn issuer_with_a_trailing_slash_is_rejected() {
        let keys = keyset();
        let mut c = serde_json::to_value(claims(now())).unwrap();
        c["iss"] = format!("{ISS}/").into();
        assert_eq!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, now()), Err(TokenError::BadClaims));
    }

    #[test]
    fn expiry_has_thirty_seconds_of_leeway() {
        let keys = keyset();
        let t = now();
        let mut c = serde_json::to_value(claims(t - 900)).unwrap();
        c["exp"] = (t - 29).into();
        assert!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, t).is_ok(), "exp = now-29 is within leeway");
        c["exp"] = (t - 31).into();
        assert_eq!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, t), Err(TokenError::Expired));
    }

    #[test]
    fn future_nbf_and_iat_are_rejected() {
        let keys = keyset();
        let t = now();
        let mut c = serde_json::to_value(claims(t)).unwrap();
        c["nbf"] = (t + 120).into();
        assert_eq!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, t), Err(TokenError::NotYetValid));
        let mut c = serde_json::to_value(claims(t)).unwrap();
        c["iat"] = (t + 120).into();
        c["exp"] = (t + 600).into();
        assert_eq!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, t), Err(TokenError::NotYetValid));
    }

    #[test]
    fn lifetimes_over_an_hour_are_rejected() {
        let keys = keyset();
        let t = now();
        let mut c = serde_json::to_value(claims(t)).unwrap();
        c["exp"] = (t + 7200).into();
        assert_eq!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, t), Err(TokenError::BadClaims));
    }

    #[test]
    fn missing_or_mistyped_claims_are_rejected() {
        let keys = keyset();
        for field in ["jti", "client_id", "scope", "tenant_id", "sub", "iat"] {
            let mut c = serde_json::to_value(claims(now())).unwrap();
            c.as_object_mut().unwrap().remove(field);
            assert!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, now()).is_err(), "{field} missing");
        }
        let mut c = serde_json::to_value(claims(now())).unwrap();
        c["scope"] = serde_json::json!(["models:read"]);
        assert!(verify(&keys, &forge(&keys, header(&keys), &c), ISS, AUD, now()).is_err(), "scope must be a string");
    }
}
