//! Leak reports: what the server does with a key found in public, and the keys GitHub's secret
//! scanning signs its reports with.
//!
//! GitHub's [secret-scanning partner programme] POSTs the tokens it finds that match a
//! partner's pattern to `POST /v1/leaks/github`, signed with ECDSA P-256 over SHA-256 of the raw
//! body: `Github-Public-Key-Identifier` names the key, `Github-Public-Key-Signature` holds the
//! base64 DER signature. GitHub publishes its public keys; keyward fetches nothing at run time,
//! so the operator configures them (`keyward serve --github-scanning-key ID=FILE.pem`).
//!
//! ```
//! use base64::Engine as _;
//! use keyward_server::leaks::GitHubScanningKey;
//! use p256::ecdsa::{Signature, SigningKey, signature::Signer as _};
//! use p256::pkcs8::{EncodePublicKey as _, LineEnding};
//!
//! // GitHub's side: a P-256 key pair (GitHub publishes the public half).
//! let signing = SigningKey::from_slice(&[7; 32]).unwrap();
//! let pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
//! let body = br#"[{"token":"kw_live_...","type":"keyward_api_key","url":"https://github.com/o/r","source":"content"}]"#;
//! let signature: Signature = signing.sign(body);
//! let header = base64::engine::general_purpose::STANDARD.encode(signature.to_der());
//!
//! let key = GitHubScanningKey::from_pem("github-key-1", &pem).unwrap();
//! assert!(key.verifies(body, &header));
//! assert!(!key.verifies(b"[]", &header));
//! ```
//!
//! [secret-scanning partner programme]: https://docs.github.com/en/code-security/secret-scanning/secret-scanning-partnership-program/secret-scanning-partner-program

use base64::Engine as _;
use keyward_core::LeakPolicy;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

/// One of the public keys GitHub signs secret-scanning reports with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubScanningKey {
    /// GitHub's identifier of the key (`Github-Public-Key-Identifier`).
    pub id: String,
    key: VerifyingKey,
}

impl GitHubScanningKey {
    /// The key `id` from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) document, as GitHub publishes
    /// it; an error says why it is not a P-256 public key.
    pub fn from_pem(id: &str, pem: &str) -> Result<Self, String> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| format!("not a P-256 public key in PEM: {e}"))?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the key identifier must be visible ASCII".into());
        }
        Ok(Self { id: id.to_owned(), key })
    }

    /// Whether `signature` (base64 of a DER ECDSA signature) signs `body` with this key.
    pub fn verifies(&self, body: &[u8], signature: &str) -> bool {
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        Signature::from_der(&der).is_ok_and(|sig| self.key.verify(body, &sig).is_ok())
    }
}

/// How the server handles leak reports.
#[derive(Debug, Clone, Default)]
pub struct LeakSettings {
    /// Revoke (the default) or flag the keys reports name.
    pub policy: LeakPolicy,
    /// The keys GitHub's reports may be signed with; none refuses every GitHub report.
    pub github_keys: Vec<GitHubScanningKey>,
}

impl LeakSettings {
    /// Whether the report `body` is signed, by a configured key named `key_id`, with `signature`.
    pub fn github_signed(&self, key_id: &str, signature: &str, body: &[u8]) -> bool {
        self.github_keys.iter().any(|k| k.id == key_id && k.verifies(body, signature))
    }
}
