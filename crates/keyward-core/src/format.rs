//! The key format: `{prefix}_{env}_{secret}{checksum}`.
//!
//! * `prefix` is per deployment (`kw` by default): a lowercase letter followed by up to 15
//!   lowercase letters or digits, so that `_` always separates the parts.
//! * `env` is `live` or `test`.
//! * `secret` holds at least 256 bits from the operating system's CSPRNG, in base62 (default) or
//!   lowercase hex.
//! * `checksum` is the CRC32 of everything before it, as 6 base62 characters, so that scanners
//!   and the verifier reject mistyped or made-up keys without any I/O.
//!
//! ```
//! use keyward_core::{KeyEnvironment, KeyFormat, SecretEncoding};
//!
//! let format = KeyFormat::default();
//! let key = format.generate(KeyEnvironment::Live);
//! let parsed = format.parse(key.expose_secret()).unwrap();
//! assert_eq!(parsed.environment, KeyEnvironment::Live);
//! assert!(key.expose_secret().starts_with("kw_live_"));
//!
//! // VisionPipe-style keys: `vp_live_` + 64 hex characters (+ checksum).
//! let vp = KeyFormat::new("vp").unwrap().with_encoding(SecretEncoding::Hex);
//! let key = vp.generate(KeyEnvironment::Live);
//! assert_eq!(key.expose_secret().len(), "vp_live_".len() + 64 + 6);
//! assert_eq!(vp.scanner_regex(), r"\bvp_(?:live|test)_[0-9a-f]{64}[0-9A-Za-z]{6}\b");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::secret::ApiKeySecret;

/// The 62 characters of base62, in the order used for numbers (`0-9A-Za-z`).
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Length of the checksum suffix.
pub const CHECKSUM_LEN: usize = 6;
/// Smallest secret a format may be configured with, in bytes of entropy.
pub const MIN_SECRET_BYTES: usize = 32;

/// Whether a key is for production or for testing; part of the key's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeyEnvironment {
    /// `live`: production traffic.
    Live,
    /// `test`: testing and sandboxes.
    Test,
}

impl KeyEnvironment {
    /// The text used in the key (`live` or `test`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for KeyEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyEnvironment {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Self::Live),
            "test" => Ok(Self::Test),
            _ => Err(KeyParseError::Environment),
        }
    }
}

/// How the random part of a key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecretEncoding {
    /// `0-9A-Za-z`, about 5.95 bits a character.
    #[default]
    Base62,
    /// `0-9a-f`, 4 bits a character.
    Hex,
}

impl SecretEncoding {
    fn alphabet(self) -> &'static [u8] {
        match self {
            Self::Base62 => BASE62,
            Self::Hex => HEX,
        }
    }

    /// Characters needed to carry `bytes` bytes of entropy.
    fn chars_for(self, bytes: usize) -> usize {
        match self {
            Self::Hex => bytes * 2,
            // ceil(bits / log2(62)), computed without floats: 62^n >= 2^bits.
            Self::Base62 => {
                let bits = bytes as f64 * 8.0;
                (bits / 62f64.log2()).ceil() as usize
            }
        }
    }

    fn regex_class(self) -> &'static str {
        match self {
            Self::Base62 => "[0-9A-Za-z]",
            Self::Hex => "[0-9a-f]",
        }
    }
}

/// Why a string is not a well-formed key of a [`KeyFormat`]. Decided without any I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// The key does not start with the deployment's prefix.
    #[error("the key does not start with the expected prefix")]
    Prefix,
    /// The environment part is neither `live` nor `test`.
    #[error("the key's environment is neither `live` nor `test`")]
    Environment,
    /// The key is too short or too long.
    #[error("the key has the wrong length")]
    Length,
    /// The key holds a character outside its alphabet.
    #[error("the key holds a character outside its alphabet")]
    Alphabet,
    /// The checksum does not match.
    #[error("the key's checksum does not match")]
    Checksum,
}

/// Why a [`KeyFormat`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// The prefix is not a lowercase letter followed by up to 15 lowercase letters or digits.
    #[error(
        "the key prefix must be 1 to 16 characters: a lowercase letter, then lowercase letters or digits"
    )]
    Prefix,
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("the secret must carry at least {MIN_SECRET_BYTES} bytes of entropy")]
    SecretTooShort,
}

/// Keys issued by another system and [imported](crate::KeyService::import_keys) by their
/// digest: a fixed prefix and a length range, any visible ASCII after it. Such keys carry no
/// checksum, so a verifier configured with this format checks only their shape, then looks them
/// up by hash like any other key.
///
/// ```
/// use keyward_core::LegacyFormat;
///
/// let legacy = LegacyFormat::new("sk_", 20, 128).unwrap();
/// assert!(legacy.matches("sk_live_abcdefghijklmnop"));
/// assert!(!legacy.matches("sk_short"));
/// assert!(!legacy.matches("pk_live_abcdefghijklmnop"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyFormat {
    prefix: String,
    min_len: usize,
    max_len: usize,
}

/// Longest key a [`LegacyFormat`] may accept.
pub const MAX_LEGACY_KEY_LEN: usize = 512;

impl LegacyFormat {
    /// Keys starting with `prefix` (1 to 32 visible ASCII characters), `min_len` to `max_len`
    /// characters long in all (`prefix` + 8 <= `min_len` <= `max_len` <= 512).
    pub fn new(prefix: &str, min_len: usize, max_len: usize) -> Result<Self, &'static str> {
        if prefix.is_empty() || prefix.len() > 32 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the legacy key prefix must be 1 to 32 visible ASCII characters");
        }
        if min_len < prefix.len() + 8 || min_len > max_len || max_len > MAX_LEGACY_KEY_LEN {
            return Err("legacy key lengths need prefix length + 8 <= min <= max <= 512");
        }
        Ok(Self { prefix: prefix.to_owned(), min_len, max_len })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `key` has this shape.
    pub fn matches(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && (self.min_len..=self.max_len).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_graphic())
    }
}

/// A deployment's key format. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
    encoding: SecretEncoding,
    secret_bytes: usize,
    secret_chars: usize,
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self::new("kw").expect("`kw` is a valid prefix")
    }
}

/// The parts of a well-formed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey {
    /// `live` or `test`.
    pub environment: KeyEnvironment,
}

impl KeyFormat {
    /// A base62 format with a 32-byte secret and the given prefix.
    pub fn new(prefix: &str) -> Result<Self, KeyFormatError> {
        let mut chars = prefix.bytes();
        let valid = matches!(chars.next(), Some(b'a'..=b'z'))
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && prefix.len() <= 16;
        if !valid {
            return Err(KeyFormatError::Prefix);
        }
        let encoding = SecretEncoding::Base62;
        Ok(Self {
            prefix: prefix.to_owned(),
            encoding,
            secret_bytes: MIN_SECRET_BYTES,
            secret_chars: encoding.chars_for(MIN_SECRET_BYTES),
        })
    }

    /// Uses another encoding for the secret.
    pub fn with_encoding(mut self, encoding: SecretEncoding) -> Self {
        self.encoding = encoding;
        self.secret_chars = encoding.chars_for(self.secret_bytes);
        self
    }

    /// Uses a longer secret (at least [`MIN_SECRET_BYTES`]).
    pub fn with_secret_bytes(mut self, bytes: usize) -> Result<Self, KeyFormatError> {
        if bytes < MIN_SECRET_BYTES {
            return Err(KeyFormatError::SecretTooShort);
        }
        self.secret_bytes = bytes;
        self.secret_chars = self.encoding.chars_for(bytes);
        Ok(self)
    }

    /// The deployment prefix, e.g. `kw`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The secret's encoding.
    pub fn encoding(&self) -> SecretEncoding {
        self.encoding
    }

    /// Length of every key of this format and environment.
    pub fn key_len(&self, env: KeyEnvironment) -> usize {
        self.prefix.len() + 1 + env.as_str().len() + 1 + self.secret_chars + CHECKSUM_LEN
    }

    /// A regular expression that matches this format's keys, for secret scanners.
    pub fn scanner_regex(&self) -> String {
        format!(
            r"\b{}_(?:live|test)_{}{{{}}}[0-9A-Za-z]{{{CHECKSUM_LEN}}}\b",
            self.prefix,
            self.encoding.regex_class(),
            self.secret_chars
        )
    }

    /// Generates a new key from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// When the operating system has no source of randomness, which keyward cannot work without.
    pub fn generate(&self, env: KeyEnvironment) -> ApiKeySecret {
        let mut out = String::with_capacity(self.key_len(env));
        out.push_str(&self.prefix);
        out.push('_');
        out.push_str(env.as_str());
        out.push('_');
        let alphabet = self.encoding.alphabet();
        // Rejection sampling keeps every character uniform: only bytes below the largest
        // multiple of the alphabet's size are used.
        let limit = 256 - (256 % alphabet.len());
        let mut pool = zeroize::Zeroizing::new([0u8; 64]);
        let mut used = pool.len();
        let mut produced = 0;
        while produced < self.secret_chars {
            if used == pool.len() {
                getrandom::fill(pool.as_mut()).expect("the OS random number generator failed");
                used = 0;
            }
            let b = pool[used] as usize;
            used += 1;
            if b < limit {
                out.push(alphabet[b % alphabet.len()] as char);
                produced += 1;
            }
        }
        let checksum = checksum(out.as_bytes());
        out.push_str(std::str::from_utf8(&checksum).expect("base62 is ASCII"));
        ApiKeySecret::new(out)
    }

    /// Checks that `key` is a well-formed key of this format, without any I/O.
    pub fn parse(&self, key: &str) -> Result<ParsedKey, KeyParseError> {
        let bytes = key.as_bytes();
        let p = self.prefix.len();
        if bytes.len() <= p || &bytes[..p] != self.prefix.as_bytes() || bytes[p] != b'_' {
            return Err(KeyParseError::Prefix);
        }
        let rest = &bytes[p + 1..];
        let env = match rest.get(..5) {
            Some(b"live_") => KeyEnvironment::Live,
            Some(b"test_") => KeyEnvironment::Test,
            _ => return Err(KeyParseError::Environment),
        };
        let tail = &rest[5..];
        if tail.len() != self.secret_chars + CHECKSUM_LEN {
            return Err(KeyParseError::Length);
        }
        let (secret, sum) = tail.split_at(self.secret_chars);
        let in_alphabet = match self.encoding {
            SecretEncoding::Base62 => all_bytes(secret, is_base62),
            SecretEncoding::Hex => all_bytes(secret, is_lower_hex),
        };
        if !in_alphabet || !all_bytes(sum, is_base62) {
            return Err(KeyParseError::Alphabet);
        }
        let expected = checksum(&bytes[..bytes.len() - CHECKSUM_LEN]);
        if expected != sum {
            return Err(KeyParseError::Checksum);
        }
        Ok(ParsedKey { environment: env })
    }
}

/// Whether `test` holds for every byte, tested on them all without an early exit: a key is
/// checked on every request, and a loop without one is unrolled and vectorised, where `all`'s
/// branch per byte costs more than the SHA-256 of the key.
fn all_bytes(bytes: &[u8], test: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(true, |all, &c| all & test(c))
}

/// `c.is_ascii_alphanumeric()`, without branches: `c | 0x20` maps exactly the ASCII letters
/// onto `a..=z`.
fn is_base62(c: u8) -> bool {
    (c.wrapping_sub(b'0') < 10) | ((c | 0x20).wrapping_sub(b'a') < 26)
}

/// `matches!(c, b'0'..=b'9' | b'a'..=b'f')`, without branches.
fn is_lower_hex(c: u8) -> bool {
    (c.wrapping_sub(b'0') < 10) | (c.wrapping_sub(b'a') < 6)
}

/// CRC32 of `body` as 6 base62 digits, most significant first.
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_checks_accept_exactly_their_bytes() {
        for c in 0..=u8::MAX {
            assert_eq!(is_base62(c), c.is_ascii_alphanumeric(), "byte {c:#04x}");
            assert_eq!(is_lower_hex(c), matches!(c, b'0'..=b'9' | b'a'..=b'f'), "byte {c:#04x}");
        }
        assert!(all_bytes(b"", is_base62));
        assert!(!all_bytes(b"abc-", is_base62), "the last byte counts too");
        assert!(!all_bytes(b"-abc", is_base62));
    }

    #[test]
    fn base62_secret_carries_at_least_256_bits() {
        let f = KeyFormat::default();
        assert_eq!(f.secret_chars, 43);
        assert!(43.0 * 62f64.log2() >= 256.0);
        assert_eq!(f.key_len(KeyEnvironment::Live), "kw_live_".len() + 43 + 6);
    }

    #[test]
    fn rejects_each_kind_of_bad_key() {
        let f = KeyFormat::default();
        let key = f.generate(KeyEnvironment::Test);
        let k = key.expose_secret();
        assert_eq!(f.parse(k), Ok(ParsedKey { environment: KeyEnvironment::Test }));
        assert_eq!(f.parse(&k.replacen("kw_", "kx_", 1)), Err(KeyParseError::Prefix));
        assert_eq!(f.parse(&k.replacen("_test_", "_prod_", 1)), Err(KeyParseError::Environment));
        assert_eq!(f.parse(&k[..k.len() - 1]), Err(KeyParseError::Length));
        assert_eq!(f.parse(&format!("{k}0")), Err(KeyParseError::Length));
        let mut bad = k.to_owned();
        bad.replace_range(10..11, "-");
        assert_eq!(f.parse(&bad), Err(KeyParseError::Alphabet));
        let mut bad = k.to_owned();
        let c = if &k[12..13] == "a" { "b" } else { "a" };
        bad.replace_range(12..13, c);
        assert_eq!(f.parse(&bad), Err(KeyParseError::Checksum));
        assert_eq!(f.parse(""), Err(KeyParseError::Prefix));
        assert_eq!(f.parse("kw_"), Err(KeyParseError::Environment));
    }

    #[test]
    fn hex_format_rejects_uppercase() {
        let f = KeyFormat::new("vp").unwrap().with_encoding(SecretEncoding::Hex);
        let key = f.generate(KeyEnvironment::Live);
        let upper = key.expose_secret().replace('a', "A");
        if upper != key.expose_secret() {
            assert_eq!(f.parse(&upper), Err(KeyParseError::Alphabet));
        }
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(KeyFormat::new("vsk").is_ok());
        assert!(KeyFormat::new("a1").is_ok());
        for bad in ["", "1a", "Kw", "k_w", "abcdefghijklmnopq"] {
            assert_eq!(KeyFormat::new(bad), Err(KeyFormatError::Prefix), "{bad}");
        }
        assert_eq!(KeyFormat::default().with_secret_bytes(16), Err(KeyFormatError::SecretTooShort));
    }
}
