//! Access-token signing keys: generation (ES256 P-256 or RS256 2048-bit, with aws-lc-rs), RFC 7638
//! thumbprints as `kid`, the JWKS document, and the in-memory `KeyStore` every request reads.
//! Private keys exist in memory only for the active key and in the database only sealed under
//! the master key. States: next → active → retiring → retired (see db::signing_keys for the
//! transitions).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::SigningAlg;
pub use crate::domain::KeyState;

/// A newly generated key pair: PKCS#8 private key (to be sealed) and its public JWK.
pub struct GeneratedKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub pkcs8: Vec<u8>,
    pub public_jwk: Value,
}

pub fn generate(alg: SigningAlg) -> anyhow::Result<GeneratedKey> {
    let rng = SystemRandom::new();
    let (pkcs8, members) = match alg {
        SigningAlg::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| anyhow::anyhow!("EC key generation failed"))?;
            let pair = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|e| anyhow::anyhow!("generated EC key rejected: {e}"))?;
            let point = pair.public_key().as_ref();
            anyhow::ensure!(point.len() == 65 && point[0] == 4, "unexpected EC public key encoding");
            let members = json!({ "crv": "P-256", "kty": "EC", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]) });
            (doc.as_ref().to_vec(), members)
        }
        SigningAlg::RS256 => {
            use aws_lc_rs::encoding::AsDer;
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
            let der = pair.as_der().map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?;
            let public = pair.public_key();
            let members = json!({
                "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
                "kty": "RSA",
                "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            });
            (der.as_ref().to_vec(), members)
        }
    };
    let kid = thumbprint(&members);
    let mut public_jwk = members;
    if let Some(obj) = public_jwk.as_object_mut() {
        obj.insert("kid".into(), json!(kid));
        obj.insert("use".into(), json!("sig"));
        obj.insert("alg".into(), json!(alg.as_str()));
    }
    Ok(GeneratedKey { kid, alg, pkcs8, public_jwk })
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
/// serde_json's map is ordered (BTreeMap) and compact, which is exactly that canonical form.
fn thumbprint(required_members: &Value) -> String {
    B64.encode(Sha256::digest(required_members.to_string().as_bytes()))
}

pub enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    pub fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> anyhow::Result<Signer> {
        Ok(match alg {
            SigningAlg::ES256 => Signer::Ec(
                EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|e| anyhow::anyhow!("bad EC key: {e}"))?,
            ),
            SigningAlg::RS256 => Signer::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| anyhow::anyhow!("bad RSA key: {e}"))?),
        })
    }

    pub fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match self {
            Signer::Ec(pair) => Ok(pair.sign(&rng, message).map_err(|_| anyhow::anyhow!("signing failed"))?.as_ref().to_vec()),
            Signer::Rsa(pair) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(&sig::RSA_PKCS1_SHA256, &rng, message, &mut out).map_err(|_| anyhow::anyhow!("signing failed"))?;
                Ok(out)
            }
        }
    }
}

pub struct ActiveKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub signer: Signer,
}

pub struct VerifyKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// One consistent view of the keys: what signs now, what verifies, and the JWKS to publish.
#[derive(Default)]
pub struct KeySet {
    pub active: Option<ActiveKey>,
    pub verify: HashMap<String, VerifyKey>,
    /// Pre-rendered `{"keys":[…]}` for /.well-known/jwks.json.
    pub jwks: String,
    /// Identity of this view (kid:state pairs) to skip rebuilding when nothing changed.
    pub fingerprint: String,
}

/// A key row as loaded for the store (private key already unsealed when active).
pub struct LoadedKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub state: KeyState,
    pub public_jwk: Value,
    pub active_pkcs8: Option<Vec<u8>>,
}

impl KeySet {
    pub fn build(keys: Vec<LoadedKey>) -> anyhow::Result<KeySet> {
        let mut set = KeySet { fingerprint: fingerprint(&keys), ..Default::default() };
        let mut published = Vec::new();
        for k in keys {
            if k.state == KeyState::Retired {
                continue;
            }
            let jwk = &k.public_jwk;
            let text = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            let (alg, key) = match k.alg {
                SigningAlg::ES256 => (Algorithm::ES256, DecodingKey::from_ec_components(&text("x"), &text("y"))?),
                SigningAlg::RS256 => (Algorithm::RS256, DecodingKey::from_rsa_components(&text("n"), &text("e"))?),
            };
            set.verify.insert(k.kid.clone(), VerifyKey { alg, key });
            published.push(k.public_jwk.clone());
            if let (KeyState::Active, Some(pkcs8)) = (k.state, &k.active_pkcs8) {
                set.active = Some(ActiveKey { kid: k.kid.clone(), alg: k.alg, signer: Signer::from_pkcs8(k.alg, pkcs8)? });
            }
        }
        set.jwks = json!({ "keys": published }).to_string();
        Ok(set)
    }
}

pub fn fingerprint(keys: &[LoadedKey]) -> String {
    keys.iter().map(|k| format!("{}:{}", k.kid, k.state.as_str())).collect::<Vec<_>>().join(",")
}

/// The process-wide key view; reads are a cheap `Arc` clone.
#[derive(Default)]
pub struct KeyStore {
    current: RwLock<Arc<KeySet>>,
}

impl KeyStore {
    pub fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, set: KeySet) {
        let set = Arc::new(set);
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_keys_sign_and_verify_with_jsonwebtoken() {
        let k = generate(SigningAlg::ES256).unwrap();
        assert_eq!(k.kid.len(), 43);
        assert_eq!(k.public_jwk["kid"], k.kid);
        let set = KeySet::build(vec![LoadedKey {
            kid: k.kid.clone(),
            alg: k.alg,
            state: KeyState::Active,
            public_jwk: k.public_jwk.clone(),
            active_pkcs8: Some(k.pkcs8.clone()),
        }])
        .unwrap();
        let active = set.active.as_ref().unwrap();
        let msg = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0";
        let signature = active.signer.sign(msg).unwrap();
        assert_eq!(signature.len(), 64);
        let verify = &set.verify[&k.kid];
        let ok = jsonwebtoken::crypto::verify(&B64.encode(&signature), msg, &verify.key, verify.alg).unwrap();
        assert!(ok);
        assert!(set.jwks.contains(&k.kid) && !set.jwks.contains("\"d\""));
    }

    #[test]
    fn rs256_keys_sign_and_verify_with_jsonwebtoken() {
        let k = generate(SigningAlg::RS256).unwrap();
        let signer = Signer::from_pkcs8(k.alg, &k.pkcs8).unwrap();
        let set = KeySet::build(vec![LoadedKey {
            kid: k.kid.clone(),
            alg: k.alg,
            state: KeyState::Next,
            public_jwk: k.public_jwk.clone(),
            active_pkcs8: None,
        }])
        .unwrap();
        assert!(set.active.is_none(), "a next key publishes but does not sign");
        let msg = b"a.b";
        let signature = signer.sign(msg).unwrap();
        let verify = &set.verify[&k.kid];
        assert!(jsonwebtoken::crypto::verify(&B64.encode(&signature), msg, &verify.key, verify.alg).unwrap());
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let members = json!({
            "e": "AQAB",
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        assert_eq!(thumbprint(&members), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
