//! Machine credentials (docs/auth.md, credential formats): client secrets, API keys and management tokens
//! are 256-bit random values generated here, shown once, and stored only as
//! HMAC-SHA256(pepper, secret). A CRC32 suffix lets us reject typos and scanners' guesses without a
//! database lookup. Formats:
//!
//! - client secret:     `gth_cs_{43 base62}{crc:6}`
//! - API key:           `gth_{live|test}_{key_id:12}_{43 base62}{crc:6}`
//! - management token:  `gth_mgmt_{token_id:12}_{43 base62}{crc:6}`

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;
use crate::domain::random_base62;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_LEN: usize = 43;
pub const KEY_ID_LEN: usize = 12;
const CRC_LEN: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The pepper keying every stored credential hash. Debug never shows it.
#[derive(Clone)]
pub struct Pepper(Vec<u8>);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper([redacted])")
    }
}

impl Pepper {
    pub fn new(secret: &Secret) -> Pepper {
        Pepper(secret.expose().as_bytes().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    pub fn hash(&self, secret: &str) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Constant-time comparison of `secret`'s hash with a stored one.
    pub fn verify(&self, secret: &str, stored: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(secret.as_bytes());
        mac.verify_slice(stored).is_ok()
    }

    /// Spends the same work as `verify` for unknown ids, so timing does not reveal which exist.
    pub fn verify_dummy(&self, secret: &str) {
        let _ = self.verify(secret, &[0u8; 32]);
    }
}

fn crc_suffix(body: &str) -> String {
    let mut n = u64::from(crc32fast::hash(body.as_bytes()));
    let mut out = [b'0'; CRC_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn with_crc(body: String) -> String {
    let crc = crc_suffix(&body);
    body + &crc
}

fn crc_ok(token: &str) -> bool {
    token.len() > CRC_LEN && token.is_char_boundary(token.len() - CRC_LEN) && {
        let (body, crc) = token.split_at(token.len() - CRC_LEN);
        crc_suffix(body) == crc
    }
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn generate_client_secret() -> String {
    with_crc(format!("gth_cs_{}", random_base62(SECRET_LEN)))
}

/// Format and checksum only; the hash comparison decides.
pub fn client_secret_well_formed(secret: &str) -> bool {
    secret.len() == 7 + SECRET_LEN + CRC_LEN && secret.starts_with("gth_cs_") && is_base62(&secret[7..]) && crc_ok(secret)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEnvironment {
    Live,
    Test,
}

impl KeyEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEnvironment::Live => "live",
            KeyEnvironment::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<KeyEnvironment> {
        match s {
            "live" => Some(KeyEnvironment::Live),
            "test" => Some(KeyEnvironment::Test),
            _ => None,
        }
    }
}

/// A freshly generated key: the full value (shown once) and the parts we store.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub full: String,
    pub last4: String,
}

pub fn generate_api_key(env: KeyEnvironment) -> NewKey {
    let id = random_base62(KEY_ID_LEN);
    let full = with_crc(format!("gth_{}_{id}_{}", env.as_str(), random_base62(SECRET_LEN)));
    let last4 = full[full.len() - 4..].to_owned();
    NewKey { id, full, last4 }
}

pub fn generate_management_token() -> NewKey {
    let id = random_base62(KEY_ID_LEN);
    let full = with_crc(format!("gth_mgmt_{id}_{}", random_base62(SECRET_LEN)));
    let last4 = full[full.len() - 4..].to_owned();
    NewKey { id, full, last4 }
}

/// A presented key split into its parts, after the format and checksum checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub kind: &'a str,
    pub id: &'a str,
}

/// `gth_{kind}_{id:12}_{secret:43}{crc:6}` → kind and id, or None (no database lookup needed).
fn parse_prefixed<'a>(token: &'a str, kinds: &[&str]) -> Option<ParsedKey<'a>> {
    let rest = token.strip_prefix("gth_")?;
    let (kind, rest) = rest.split_once('_')?;
    if !kinds.contains(&kind) {
        return None;
    }
    let (id, secret) = rest.split_once('_')?;
    if id.len() != KEY_ID_LEN || secret.len() != SECRET_LEN + CRC_LEN || !is_base62(id) || !is_base62(secret) {
        return None;
    }
    crc_ok(token).then_some(ParsedKey { kind, id })
}

pub fn parse_api_key(token: &str) -> Option<ParsedKey<'_>> {
    parse_prefixed(token, &["live", "test"])
}

pub fn parse_management_token(token: &str) -> Option<ParsedKey<'_>> {
    parse_prefixed(token, &["mgmt"])
}

/// Whether a bearer value looks like one of our keys (routes it to key verification, not JWT).
pub fn looks_like_key(token: &str) -> bool {
    token.starts_with("gth_")
}

/// How an API key is listed: `gth_live_{id}_…{last4}`.
pub fn masked_api_key(env: &str, id: &str, last4: &str) -> String {
    format!("gth_{env}_{id}_…{last4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secrets_have_the_spec_format() {
        let s = generate_client_secret();
        assert_eq!(s.len(), 56);
        assert!(client_secret_well_formed(&s));
        let mut typo = s.clone().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert!(!client_secret_well_formed(&String::from_utf8(typo).unwrap()));
    }

    #[test]
    fn api_keys_match_the_secret_scanning_pattern() {
        for env in [KeyEnvironment::Live, KeyEnvironment::Test] {
            let k = generate_api_key(env);
            let rest = k.full.strip_prefix(&format!("gth_{}_", env.as_str())).unwrap();
            assert_eq!(rest.len(), 12 + 1 + 49);
            assert!(rest[..12].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(rest[13..].bytes().all(|b| b.is_ascii_alphanumeric()));
            let parsed = parse_api_key(&k.full).unwrap();
            assert_eq!(parsed.id, k.id);
            assert_eq!(parsed.kind, env.as_str());
            assert!(k.full.ends_with(&k.last4));
        }
    }

    #[test]
    fn checksum_rejects_typos_and_other_kinds() {
        let k = generate_api_key(KeyEnvironment::Live);
        let mut chars: Vec<char> = k.full.chars().collect();
        let i = chars.len() - 10;
        chars[i] = if chars[i] == 'x' { 'y' } else { 'x' };
        assert!(parse_api_key(&chars.into_iter().collect::<String>()).is_none());
        assert!(parse_api_key("gth_live_short").is_none());
        assert!(parse_management_token(&k.full).is_none());
        let m = generate_management_token();
        assert!(parse_api_key(&m.full).is_none());
        assert_eq!(parse_management_token(&m.full).unwrap().id, m.id);
    }

    #[test]
    fn pepper_hashes_verify_in_constant_time_api() {
        let p = Pepper::new(&Secret::new("pepper-for-tests-pepper-for-tests"));
        let h = p.hash("abc");
        assert!(p.verify("abc", &h));
        assert!(!p.verify("abd", &h));
        assert!(!p.verify("abc", &h[..31]));
        let other = Pepper::new(&Secret::new("another-pepper-another-pepper-xx"));
        assert!(!other.verify("abc", &h), "the pepper keys the hash");
    }
}
