//! The one type that ever holds a key's plaintext.

use std::fmt;

use zeroize::Zeroizing;

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
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(Zeroizing<String>);

impl ApiKeySecret {
    /// Wraps a plaintext key.
    pub fn new(plaintext: String) -> Self {
        Self(Zeroizing::new(plaintext))
    }

    /// The plaintext. Call it only to hand the key to its owner (once) or to hash it.
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }
}

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
