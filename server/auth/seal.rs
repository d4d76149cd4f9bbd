//! Encryption at rest for private signing keys and upstream worker API keys: AES-256-GCM under a
//! master key from configuration, with a random 96-bit nonce per value and the row's identity as
//! associated data (a sealed value copied to another row does not open).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the master key must be 32 bytes, base64-encoded (generate one with `openssl rand -base64 32`)")]
    BadMasterKey,
    #[error("sealed value is corrupt or was sealed under another master key")]
    Open,
    #[error("encryption failed")]
    Seal,
}

pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn from_config(secret: &Secret) -> Result<MasterKey, SealError> {
        let bytes = secret.decode_key32().ok_or(SealError::BadMasterKey)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadMasterKey)?;
        Ok(MasterKey(LessSafeKey::new(key)))
    }

    /// A new random master key, base64-encoded (for `gatehouse dev` and tests).
    pub fn generate_encoded() -> String {
        let mut bytes = [0u8; 32];
        // The system RNG failing is unrecoverable for a security product; fall back is refusal.
        if SystemRandom::new().fill(&mut bytes).is_err() {
            return String::new();
        }
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Seal)?;
        let mut in_out = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SealError::Open);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut in_out = rest.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out).map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let key = MasterKey::from_config(&Secret::new(MasterKey::generate_encoded())).unwrap();
        let sealed = key.seal(b"private key bytes", "signing_key:abc").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        assert_eq!(key.open(&sealed, "signing_key:abc").unwrap(), b"private key bytes");
        assert!(key.open(&sealed, "signing_key:other").is_err(), "bound to its row");
        let other = MasterKey::from_config(&Secret::new(MasterKey::generate_encoded())).unwrap();
        assert!(other.open(&sealed, "signing_key:abc").is_err());
    }

    #[test]
    fn master_key_must_be_32_bytes() {
        assert!(MasterKey::from_config(&Secret::new("c2hvcnQ=")).is_err());
        assert!(MasterKey::from_config(&Secret::new("not base64!")).is_err());
    }
}
