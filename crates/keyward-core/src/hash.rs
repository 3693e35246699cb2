//! Hashing keys for storage and lookup.
//!
//! Only a digest of the whole key is stored: SHA-256 by default, or HMAC-SHA-256 with a server
//! pepper kept outside the database. Each pepper has an id, stored beside the digest, so that a
//! deployment can move to a new pepper while keys hashed with the old one keep working.
//!
//! ```
//! use keyward_core::{ApiKeySecret, KeyHasher};
//!
//! let key = ApiKeySecret::from("kw_live_example");
//! let plain = KeyHasher::sha256();
//! let peppered = KeyHasher::hmac("p1", b"server pepper, 32 bytes or more!".to_vec());
//! assert_ne!(plain.hash(&key), peppered.hash(&key));
//! assert_eq!(peppered.hash(&key).pepper_id.as_deref(), Some("p1"));
//! assert!(plain.hash(&key).digest.ct_eq(&plain.hash(&key).digest));
//! ```

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::ApiKeySecret;

/// A 32-byte digest of a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// Compares two digests in constant time.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Lowercase hex, as stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses lowercase or uppercase hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not a secret, but a short form is enough to tell two apart in logs.
        write!(f, "KeyDigest({}…)", &self.to_hex()[..12])
    }
}

/// The stored form of a key: its digest and, when peppered, the pepper's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyHash {
    /// SHA-256 or HMAC-SHA-256 of the whole key.
    pub digest: KeyDigest,
    /// Id of the pepper, `None` for plain SHA-256.
    pub pepper_id: Option<String>,
}

#[derive(Clone)]
struct Pepper {
    id: String,
    secret: Arc<Zeroizing<Vec<u8>>>,
}

/// Hashes keys: plain SHA-256, or HMAC-SHA-256 with a current pepper and older ones still
/// accepted for lookup.
#[derive(Clone, Default)]
pub struct KeyHasher {
    current: Option<Pepper>,
    previous: Vec<Pepper>,
    plain_fallback: bool,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher")
            .field("pepper_id", &self.current.as_ref().map(|p| &p.id))
            .field("previous", &self.previous.iter().map(|p| &p.id).collect::<Vec<_>>())
            .finish()
    }
}

impl KeyHasher {
    /// Plain SHA-256 of the whole key.
    pub fn sha256() -> Self {
        Self::default()
    }

    /// HMAC-SHA-256 keyed with `pepper`, recorded as `pepper_id`.
    pub fn hmac(pepper_id: impl Into<String>, pepper: Vec<u8>) -> Self {
        Self {
            current: Some(Pepper { id: pepper_id.into(), secret: Arc::new(Zeroizing::new(pepper)) }),
            previous: Vec::new(),
            plain_fallback: false,
        }
    }

    /// Keeps accepting keys hashed with an older pepper (`None` for plain SHA-256).
    pub fn with_previous(mut self, pepper_id: impl Into<String>, pepper: Vec<u8>) -> Self {
        self.previous.push(Pepper { id: pepper_id.into(), secret: Arc::new(Zeroizing::new(pepper)) });
        self
    }

    /// With a pepper, keeps accepting keys stored under plain SHA-256 (pepper id `None`) as the
    /// last candidate: keys [imported](crate::KeyService::import_keys) by their SHA-256 digest.
    pub fn with_plain_fallback(mut self) -> Self {
        self.plain_fallback = true;
        self
    }

    /// Hashes with the current pepper; what new keys are stored with.
    pub fn hash(&self, key: &ApiKeySecret) -> KeyHash {
        hash_with(self.current.as_ref(), key.expose_secret().as_bytes())
    }

    /// Every digest under which `key` may be stored: the current pepper first, then older ones.
    pub fn candidates(&self, key: &ApiKeySecret) -> Vec<KeyHash> {
        let bytes = key.expose_secret().as_bytes();
        let mut out = vec![hash_with(self.current.as_ref(), bytes)];
        out.extend(self.previous.iter().map(|p| hash_with(Some(p), bytes)));
        if self.plain_fallback && self.current.is_some() {
            out.push(hash_with(None, bytes));
        }
        out
    }
}

fn hash_with(pepper: Option<&Pepper>, bytes: &[u8]) -> KeyHash {
    KeyHash { digest: digest_with(pepper, bytes), pepper_id: pepper.map(|p| p.id.clone()) }
}

fn digest_with(pepper: Option<&Pepper>, bytes: &[u8]) -> KeyDigest {
    match pepper {
        None => KeyDigest(Sha256::digest(bytes).into()),
        Some(p) => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&p.secret)
                .expect("HMAC accepts keys of any length");
            mac.update(bytes);
            KeyDigest(mac.finalize().into_bytes().into())
        }
    }
}

/// The digests of [`KeyHasher::candidates`] without their pepper ids, held inline for the
/// usual single candidate: what a lookup needs, without an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Digests {
    One([KeyDigest; 1]),
    Many(Vec<KeyDigest>),
}

impl Digests {
    pub(crate) fn as_slice(&self) -> &[KeyDigest] {
        match self {
            Self::One(one) => one,
            Self::Many(many) => many,
        }
    }
}

impl KeyHasher {
    /// [`KeyHasher::candidates`]' digests, in the same order.
    pub(crate) fn candidate_digests(&self, key: &[u8]) -> Digests {
        let first = digest_with(self.current.as_ref(), key);
        let plain = self.plain_fallback && self.current.is_some();
        if self.previous.is_empty() && !plain {
            return Digests::One([first]);
        }
        let mut out = vec![first];
        out.extend(self.previous.iter().map(|p| digest_with(Some(p), key)));
        if plain {
            out.push(digest_with(None, key));
        }
        Digests::Many(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        let h = KeyHasher::sha256().hash(&ApiKeySecret::from("abc"));
        assert_eq!(h.digest.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(KeyDigest::from_hex(&h.digest.to_hex()), Some(h.digest));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let h =
            KeyHasher::hmac("p", b"Jefe".to_vec()).hash(&ApiKeySecret::from("what do ya want for nothing?"));
        assert_eq!(h.digest.to_hex(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn candidates_list_current_then_previous() {
        let k = ApiKeySecret::from("kw_live_x");
        let h = KeyHasher::hmac("new", b"n".to_vec()).with_previous("old", b"o".to_vec());
        let c = h.candidates(&k);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], h.hash(&k));
        assert_eq!(c[1], KeyHasher::hmac("old", b"o".to_vec()).hash(&k));
        let c = h.with_plain_fallback().candidates(&k);
        assert_eq!(c.len(), 3);
        assert_eq!(c[2], KeyHasher::sha256().hash(&k));
        assert_eq!(KeyHasher::sha256().with_plain_fallback().candidates(&k).len(), 1);
        let peppered = || KeyHasher::hmac("new", b"n".to_vec());
        for hasher in [
            KeyHasher::sha256(),
            peppered(),
            peppered().with_previous("old", b"o".to_vec()),
            peppered().with_plain_fallback(),
        ] {
            let digests: Vec<KeyDigest> = hasher.candidates(&k).iter().map(|c| c.digest).collect();
            assert_eq!(hasher.candidate_digests(k.expose_secret().as_bytes()).as_slice(), digests);
        }
    }
}
