//! The one type that ever holds a key's plaintext.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;

/// The plaintext of an API key.
///
/// `Debug` and `Display` never print the value, and the memory is zeroed when the value is
/// dropped. The only way to read it is [`ApiKeySecret::expose_secret`], which makes every place
/// that touches the plaintext easy to find.
///
/// ```
/// use keyward_core::ApiKeySecret;
///
/// let secret = ApiKeySecret::new("kw_live_not-a-real-key".to_owned());
/// assert_eq!(format!("{secret}"), "[redacted api key]");
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

    /// The plaintext. Call it only to hand the key to its owner (once) or to hash it.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Compared in constant time, so that a comparison never tells how much of a key matched.
impl PartialEq for ApiKeySecret {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret().as_bytes().ct_eq(other.expose_secret().as_bytes()).into()
    }
}

impl Eq for ApiKeySecret {}

impl From<String> for ApiKeySecret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for ApiKeySecret {
    fn from(value: &str) -> Self {
        Self::new(value.to_owned())
    }
}

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
