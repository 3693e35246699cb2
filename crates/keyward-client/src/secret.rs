//! The SDK's one holder of a key's plaintext.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::ApiKeyView;

/// The plaintext of an API key, as the server returns it once on create and rotate.
///
/// `Debug` and `Display` never print the value and the memory is zeroed on drop; read it with
/// [`ApiKeySecret::expose_secret`].
///
/// ```
/// use keyward_client::ApiKeySecret;
///
/// let secret = ApiKeySecret::new("kw_live_not-a-real-key".to_owned());
/// assert_eq!(format!("{secret:?}"), "ApiKeySecret([redacted])");
/// assert_eq!(secret.expose_secret(), "kw_live_not-a-real-key");
/// ```
#[derive(Clone)]
pub struct ApiKeySecret(SecretString);

impl ApiKeySecret {
    /// Wraps a plaintext key.
    pub fn new(plaintext: String) -> Self {
        Self(SecretString::from(plaintext))
    }

    /// The plaintext: store it or hand it to its owner, then drop it.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for ApiKeySecret {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for ApiKeySecret {}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret([redacted])")
    }
}

impl fmt::Display for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted api key]")
    }
}

impl Serialize for ApiKeySecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose_secret())
    }
}

impl<'de> Deserialize<'de> for ApiKeySecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// A key just created or rotated (`201` of `POST /v1/keys` and `POST /v1/keys/{id}/rotate`):
/// its settings and its value, which the server shows this once.
///
/// This replaces the generated `CreatedApiKey` (see `xtask`) so the value never reaches a log
/// through `Debug`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreatedApiKey {
    /// The new key's id, the same as `key.id`.
    pub id: uuid::Uuid,
    /// The key, masked.
    pub key: ApiKeyView,
    /// The full key. Store it now: it cannot be retrieved later.
    pub secret: ApiKeySecret,
}
