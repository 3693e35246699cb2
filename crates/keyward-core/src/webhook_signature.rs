//! Signing and verifying webhook deliveries, as the Standard Webhooks scheme does.
//!
//! Every delivery carries three headers: [`HEADER_ID`] (the event's id, the same across retries),
//! [`HEADER_TIMESTAMP`] (unix seconds when it was signed) and [`HEADER_SIGNATURE`] (one or more
//! space-separated `v1,<base64>` signatures). A `v1` signature is the base64 of
//! HMAC-SHA256 over `{id}.{timestamp}.{raw body}`, keyed with the endpoint's [`WebhookSecret`].
//! A receiver checks it on the raw body, before parsing it, and refuses a timestamp further than
//! [`DEFAULT_TOLERANCE`] from its own clock, so that a captured delivery cannot be replayed later.
//!
//! ```
//! use keyward_core::webhook_signature::{self, DEFAULT_TOLERANCE, VerifyError, WebhookSecret};
//!
//! let secret = WebhookSecret::generate();
//! let stored = secret.encoded(); // "whsec_...": shown once to the endpoint's owner
//! let body = br#"{"type":"key.revoked"}"#;
//! let now = chrono::Utc::now();
//! let signature = webhook_signature::sign(&secret, "evt_1", now.timestamp(), body);
//!
//! // The receiver, with the secret it was shown:
//! let theirs = WebhookSecret::parse(&stored)?;
//! let ts = now.timestamp().to_string();
//! webhook_signature::verify(&theirs, "evt_1", &ts, &signature, body, now, DEFAULT_TOLERANCE)?;
//! assert_eq!(
//!     webhook_signature::verify(&theirs, "evt_1", &ts, &signature, b"{}", now, DEFAULT_TOLERANCE),
//!     Err(VerifyError::NoMatch),
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret as _, SecretSlice};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq as _};
use zeroize::Zeroizing;

/// The header with the event's id: the same on every retry and resend of one event, so a
/// receiver can drop the deliveries it has already handled.
pub const HEADER_ID: &str = "webhook-id";
/// The header with the unix time, in whole seconds, at which the delivery was signed.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header with the space-separated signatures, each `<version>,<base64>`.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How far a delivery's timestamp may be from the receiver's clock, either way: five minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The prefix of an encoded [`WebhookSecret`].
pub const SECRET_PREFIX: &str = "whsec_";

/// The fewest key bytes [`WebhookSecret::parse`] accepts.
pub const MIN_SECRET_LEN: usize = 24;
/// The most key bytes [`WebhookSecret::parse`] accepts.
pub const MAX_SECRET_LEN: usize = 64;
/// The number of key bytes [`WebhookSecret::generate`] draws.
const GENERATED_SECRET_LEN: usize = 32;

/// The version tag of the one signature scheme there is: HMAC-SHA256.
const VERSION_V1: &str = "v1";
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// An endpoint's signing key.
///
/// The bytes are zeroed when the value is dropped, and `Debug` never prints them. Its text form,
/// `whsec_<standard base64 of the key>`, is what the server stores and shows to the endpoint's
/// owner once; [`WebhookSecret::parse`] reads it back.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

impl WebhookSecret {
    /// A fresh key of 32 random bytes from the operating system.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn generate() -> WebhookSecret {
        let mut key = vec![0u8; GENERATED_SECRET_LEN];
        getrandom::fill(&mut key).expect("the OS random number generator failed");
        WebhookSecret(SecretSlice::from(key))
    }

    /// Reads `whsec_<standard base64>`, with padding, of 24 to 64 key bytes.
    pub fn parse(s: &str) -> Result<WebhookSecret, SecretError> {
        let encoded = s.strip_prefix(SECRET_PREFIX).ok_or(SecretError::MissingPrefix)?;
        if encoded.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = Zeroizing::new(BASE64.decode(encoded).map_err(|_| SecretError::InvalidBase64)?);
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        // `to_vec` allocates exactly the length, so the boxed slice is not reallocated and the
        // decoded buffer (zeroed on drop) is the only other copy.
        Ok(WebhookSecret(SecretSlice::from(key.to_vec())))
    }

    /// The text form, `whsec_<standard base64>`. It is the secret itself: store it as one and
    /// show it only to the endpoint's owner.
    pub fn encoded(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(self.0.expose_secret()))
    }

    /// The HMAC-SHA256 tag of `{id}.{timestamp}.{body}`, with the timestamp as it was sent.
    fn tag(&self, id: &str, timestamp: &str, body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// Why [`WebhookSecret::parse`] refused a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The string does not start with `whsec_`.
    #[error("a webhook secret starts with `{SECRET_PREFIX}`")]
    MissingPrefix,
    /// Nothing follows the prefix.
    #[error("the webhook secret is empty after `{SECRET_PREFIX}`")]
    Empty,
    /// What follows the prefix is not standard, padded base64.
    #[error("the webhook secret is not standard base64 after `{SECRET_PREFIX}`")]
    InvalidBase64,
    /// The key has this many bytes, outside 24 to 64.
    #[error("a webhook secret has {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes, this one has {0}")]
    Length(usize),
}

/// Why [`verify`] refused a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is empty or not in its format: the id is empty, the timestamp is not whole
    /// seconds in ASCII digits, or a signature entry is not `<version>,<value>` (a `v1` value
    /// must be the base64 of 32 bytes). Carries the header's name.
    #[error("the `{0}` header is malformed")]
    Malformed(&'static str),
    /// The timestamp is older than the tolerance allows: perhaps a replay.
    #[error("the webhook timestamp is too old")]
    Expired,
    /// The timestamp is further ahead of the receiver's clock than the tolerance allows.
    #[error("the webhook timestamp is too far in the future")]
    Future,
    /// No `v1` signature in the header was made with this secret over this id, timestamp and body.
    #[error("no webhook signature matches")]
    NoMatch,
}

/// The `webhook-signature` value for one delivery: `v1,<base64 HMAC-SHA256>` over
/// `{id}.{timestamp}.{body}`. While an endpoint's secret is being rotated, the sender joins the
/// values for the old and the new secret with a space.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("{VERSION_V1},{}", BASE64.encode(secret.tag(id, &timestamp.to_string(), body)))
}

/// Checks one delivery: its three header values and its raw body, against the receiver's clock.
///
/// Passes when the timestamp is within `tolerance` of `now`, either way, and any `v1` signature in
/// `signature_header` matches (several are sent while a secret is rotated). Entries of other
/// versions are skipped. Signatures are compared in constant time. The checks run in this order:
/// the headers' format ([`VerifyError::Malformed`]), the timestamp ([`VerifyError::Expired`],
/// [`VerifyError::Future`]), then the signatures ([`VerifyError::NoMatch`]).
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    if id.is_empty() {
        return Err(VerifyError::Malformed(HEADER_ID));
    }
    let signed_at = parse_timestamp(timestamp).ok_or(VerifyError::Malformed(HEADER_TIMESTAMP))?;
    let candidates = parse_signatures(signature_header).ok_or(VerifyError::Malformed(HEADER_SIGNATURE))?;

    let age = i128::from(now.timestamp()) - i128::from(signed_at);
    let tolerance = i128::from(tolerance.as_secs());
    if age > tolerance {
        return Err(VerifyError::Expired);
    }
    if -age > tolerance {
        return Err(VerifyError::Future);
    }

    let expected = secret.tag(id, timestamp, body);
    // Every candidate is compared, so the time taken does not tell which one matched.
    let matched = candidates.iter().fold(Choice::from(0), |found, tag| found | expected.ct_eq(tag));
    if bool::from(matched) { Ok(()) } else { Err(VerifyError::NoMatch) }
}

/// Whole unix seconds in ASCII digits; no sign, no spaces, no fraction.
fn parse_timestamp(timestamp: &str) -> Option<i64> {
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    timestamp.parse().ok()
}

/// The `v1` tags of a signature header, or `None` when it is empty or an entry is malformed.
fn parse_signatures(header: &str) -> Option<Vec<[u8; TAG_LEN]>> {
    let mut tags = Vec::new();
    let mut entries = 0usize;
    for entry in header.split_ascii_whitespace() {
        entries += 1;
        let (version, value) = entry.split_once(',')?;
        if version.is_empty() || value.is_empty() {
            return None;
        }
        if version == VERSION_V1 {
            tags.push(BASE64.decode(value).ok()?.try_into().ok()?);
        }
    }
    (entries > 0).then_some(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    // The Standard Webhooks specification's published example, recomputed with Python's hmac.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_secret() -> WebhookSecret {
        WebhookSecret::parse(SPEC_SECRET).expect("the spec's secret parses")
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).single().expect("a valid time")
    }

    /// `verify` on the spec's example, with one part replaced.
    fn check(id: &str, timestamp: &str, header: &str, body: &[u8], now: i64) -> Result<(), VerifyError> {
        verify(&spec_secret(), id, timestamp, header, body, at(now), DEFAULT_TOLERANCE)
    }

    fn check_header(header: &str) -> Result<(), VerifyError> {
        check(SPEC_ID, &SPEC_TIMESTAMP.to_string(), header, SPEC_BODY, SPEC_TIMESTAMP)
    }

    #[test]
    fn signs_the_standard_webhooks_example() {
        assert_eq!(sign(&spec_secret(), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
    }

    #[test]
    fn verifies_the_standard_webhooks_example() {
        assert_eq!(check_header(SPEC_SIGNATURE), Ok(()));
    }

    #[test]
    fn a_changed_body_id_or_timestamp_does_not_match() {
        let ts = SPEC_TIMESTAMP.to_string();
        assert_eq!(
            check(SPEC_ID, &ts, SPEC_SIGNATURE, br#"{"test": 2432232315}"#, SPEC_TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            check("msg_other", &ts, SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
        let later = (SPEC_TIMESTAMP + 1).to_string();
        assert_eq!(
            check(SPEC_ID, &later, SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn another_secret_does_not_match() {
        let other = WebhookSecret::generate();
        let ts = SPEC_TIMESTAMP.to_string();
        let result =
            verify(&other, SPEC_ID, &ts, SPEC_SIGNATURE, SPEC_BODY, at(SPEC_TIMESTAMP), DEFAULT_TOLERANCE);
        assert_eq!(result, Err(VerifyError::NoMatch));
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused_both_ways() {
        let limit = DEFAULT_TOLERANCE.as_secs() as i64;
        let ts = SPEC_TIMESTAMP.to_string();
        let at_now = |now| check(SPEC_ID, &ts, SPEC_SIGNATURE, SPEC_BODY, now);
        assert_eq!(at_now(SPEC_TIMESTAMP + limit), Ok(()));
        assert_eq!(at_now(SPEC_TIMESTAMP - limit), Ok(()));
        assert_eq!(at_now(SPEC_TIMESTAMP + limit + 1), Err(VerifyError::Expired));
        assert_eq!(at_now(SPEC_TIMESTAMP - limit - 1), Err(VerifyError::Future));
        // Far-off values do not overflow.
        assert_eq!(
            check(SPEC_ID, &i64::MAX.to_string(), SPEC_SIGNATURE, SPEC_BODY, 0),
            Err(VerifyError::Future)
        );
        assert_eq!(check(SPEC_ID, "0", SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP), Err(VerifyError::Expired));
    }

    #[test]
    fn the_tolerance_is_the_callers() {
        let ts = SPEC_TIMESTAMP.to_string();
        let now = at(SPEC_TIMESTAMP + 10);
        let tight = Duration::from_secs(5);
        assert_eq!(
            verify(&spec_secret(), SPEC_ID, &ts, SPEC_SIGNATURE, SPEC_BODY, now, tight),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn any_v1_signature_in_the_header_may_match() {
        let other = sign(&WebhookSecret::generate(), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        assert_eq!(check_header(&format!("{other} {SPEC_SIGNATURE}")), Ok(()));
        assert_eq!(check_header(&format!("{SPEC_SIGNATURE} {other}")), Ok(()));
        assert_eq!(check_header(&format!("  {other}\t{SPEC_SIGNATURE}  ")), Ok(()));
        assert_eq!(check_header(&other), Err(VerifyError::NoMatch));
    }

    #[test]
    fn other_versions_are_skipped() {
        let value = SPEC_SIGNATURE.trim_start_matches("v1,");
        assert_eq!(check_header(&format!("v1a,{value} {SPEC_SIGNATURE}")), Ok(()));
        // The right bytes under another version do not count.
        assert_eq!(check_header(&format!("v2,{value}")), Err(VerifyError::NoMatch));
    }

    #[test]
    fn malformed_headers_are_refused_before_any_signature_is_checked() {
        let sig = VerifyError::Malformed(HEADER_SIGNATURE);
        for header in
            ["", "   ", "v1", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "v1,", ",abc", "v1,not base64!"]
        {
            assert_eq!(check_header(header), Err(sig), "{header:?}");
        }
        // A v1 value must be a whole 32-byte tag, and one bad entry spoils the header.
        assert_eq!(check_header("v1,AAAA"), Err(sig));
        assert_eq!(check_header(&format!("{SPEC_SIGNATURE} v1,AAAA")), Err(sig));

        let ts = VerifyError::Malformed(HEADER_TIMESTAMP);
        for timestamp in
            ["", "1614265330.5", "+1614265330", "-1", " 1614265330", "1614265330s", "99999999999999999999"]
        {
            assert_eq!(
                check(SPEC_ID, timestamp, SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP),
                Err(ts),
                "{timestamp:?}"
            );
        }
        let ts = SPEC_TIMESTAMP.to_string();
        assert_eq!(
            check("", &ts, SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP),
            Err(VerifyError::Malformed(HEADER_ID))
        );
    }

    #[test]
    fn debug_never_prints_the_key() {
        let secret = spec_secret();
        let printed = format!("{secret:?}");
        assert_eq!(printed, "WebhookSecret([redacted])");
        assert!(!printed.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    }

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let a = WebhookSecret::generate();
        let b = WebhookSecret::generate();
        assert_ne!(a.encoded(), b.encoded());
        assert!(a.encoded().starts_with(SECRET_PREFIX));
        let back = WebhookSecret::parse(&a.encoded()).expect("round trip");
        assert_eq!(back.encoded(), a.encoded());
        assert_eq!(back.0.expose_secret().len(), GENERATED_SECRET_LEN);
        assert_eq!(spec_secret().encoded(), SPEC_SECRET);
    }

    #[test]
    fn parse_accepts_24_to_64_bytes_only() {
        let of_len =
            |n: usize| WebhookSecret::parse(&format!("{SECRET_PREFIX}{}", BASE64.encode(vec![7u8; n])));
        assert_eq!(of_len(23).unwrap_err(), SecretError::Length(23));
        assert!(of_len(24).is_ok());
        assert!(of_len(64).is_ok());
        assert_eq!(of_len(65).unwrap_err(), SecretError::Length(65));
    }

    #[test]
    fn parse_refuses_other_shapes() {
        assert_eq!(WebhookSecret::parse("").unwrap_err(), SecretError::MissingPrefix);
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError::MissingPrefix
        );
        assert_eq!(WebhookSecret::parse("whsec_").unwrap_err(), SecretError::Empty);
        assert_eq!(WebhookSecret::parse("whsec_not*base64").unwrap_err(), SecretError::InvalidBase64);
        // Unpadded base64 of 32 bytes: standard base64 keeps its padding.
        let unpadded = BASE64.encode([1u8; 32]).trim_end_matches('=').to_owned();
        assert_eq!(
            WebhookSecret::parse(&format!("whsec_{unpadded}")).unwrap_err(),
            SecretError::InvalidBase64
        );
    }

    // docs/webhooks/vectors.json, which the Python and TypeScript receivers in docs/webhooks are
    // checked against (scripts/webhook-verify-check.sh). `vectors()` is where they come from:
    // after changing it, run this module's tests with KEYWARD_WRITE_VECTORS=1 to rewrite the file.
    const VECTORS_FILE: &str = include_str!("../../../docs/webhooks/vectors.json");
    const VECTORS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/webhooks/vectors.json");
    const VECTORS_NOW: i64 = 1_767_225_600;

    /// A second, fixed endpoint secret, so the file stays the same from run to run.
    fn endpoint_secret() -> WebhookSecret {
        let key = b"keyward webhook test vector key!";
        WebhookSecret::parse(&format!("{SECRET_PREFIX}{}", BASE64.encode(key))).expect("32 bytes")
    }

    struct Delivery {
        secret: WebhookSecret,
        id: &'static str,
        timestamp: String,
        signature: String,
        body: String,
        now: i64,
    }

    impl Delivery {
        /// A delivery signed with `secret` and checked with it at `now`.
        fn signed(secret: &WebhookSecret, id: &'static str, ts: i64, body: &str, now: i64) -> Delivery {
            Delivery {
                secret: secret.clone(),
                id,
                timestamp: ts.to_string(),
                signature: sign(secret, id, ts, body.as_bytes()),
                body: body.to_owned(),
                now,
            }
        }

        fn verdict(&self, tolerance: Duration) -> Result<(), VerifyError> {
            let now = at(self.now);
            verify(
                &self.secret,
                self.id,
                &self.timestamp,
                &self.signature,
                self.body.as_bytes(),
                now,
                tolerance,
            )
        }
    }

    /// Every case of the file: (name, delivery, what `verify` says).
    fn vectors() -> Vec<(&'static str, Delivery, Result<(), VerifyError>)> {
        let spec = spec_secret();
        let ours = endpoint_secret();
        let id = "evt_01JG8Z3V6Q9X4M2K7T5R1C0B8N";
        let ts = VECTORS_NOW - 42;
        let body = r#"{"type":"key.revoked","timestamp":"2025-12-31T23:59:18Z","data":{"workspace_id":"ws_7f3a","key":{"id":"key_9c1e","name":"Clé de production ✓","status":"revoked","start":"kw_live_4f…"}}}"#;
        let good = || Delivery::signed(&ours, id, ts, body, VECTORS_NOW);
        let limit = DEFAULT_TOLERANCE.as_secs() as i64;
        let malformed_sig = Err(VerifyError::Malformed(HEADER_SIGNATURE));
        let old_secret_sig = sign(&spec, id, ts, body.as_bytes());
        let value = |header: &str| header.trim_start_matches("v1,").to_owned();

        let spec_body = std::str::from_utf8(SPEC_BODY).expect("ASCII");
        vec![
            (
                "standard webhooks example",
                Delivery::signed(&spec, SPEC_ID, SPEC_TIMESTAMP, spec_body, SPEC_TIMESTAMP),
                Ok(()),
            ),
            ("keyward event with non-ASCII body", good(), Ok(())),
            ("empty body", Delivery::signed(&ours, id, ts, "", VECTORS_NOW), Ok(())),
            ("oldest timestamp within tolerance", Delivery { now: ts + limit, ..good() }, Ok(())),
            ("newest timestamp within tolerance", Delivery { now: ts - limit, ..good() }, Ok(())),
            (
                "rotation: old secret's signature first",
                Delivery { signature: format!("{old_secret_sig} {}", good().signature), ..good() },
                Ok(()),
            ),
            (
                "rotation: receiver still holds the old secret",
                Delivery {
                    secret: spec.clone(),
                    signature: format!("{old_secret_sig} {}", good().signature),
                    ..good()
                },
                Ok(()),
            ),
            (
                "unknown version skipped",
                Delivery {
                    signature: format!("v2,{} {}", value(&old_secret_sig), good().signature),
                    ..good()
                },
                Ok(()),
            ),
            (
                "tampered body",
                Delivery { body: body.replace("revoked", "created"), ..good() },
                Err(VerifyError::NoMatch),
            ),
            (
                "re-serialized body",
                Delivery { body: body.replace(",\"", ", \""), ..good() },
                Err(VerifyError::NoMatch),
            ),
            (
                "trailing newline added to body",
                Delivery { body: format!("{body}\n"), ..good() },
                Err(VerifyError::NoMatch),
            ),
            (
                "tampered id",
                Delivery { id: "evt_01JG8Z3V6Q9X4M2K7T5R1C0B8P", ..good() },
                Err(VerifyError::NoMatch),
            ),
            (
                "tampered timestamp",
                Delivery { timestamp: (ts + 1).to_string(), ..good() },
                Err(VerifyError::NoMatch),
            ),
            ("wrong secret", Delivery { secret: spec.clone(), ..good() }, Err(VerifyError::NoMatch)),
            (
                "multiple signatures, none matching",
                Delivery { signature: format!("{old_secret_sig} {}", sign(&ours, id, ts, b"{}")), ..good() },
                Err(VerifyError::NoMatch),
            ),
            (
                "right value under an unknown version only",
                Delivery { signature: format!("v2,{}", value(&good().signature)), ..good() },
                Err(VerifyError::NoMatch),
            ),
            ("stale timestamp", Delivery { now: ts + limit + 1, ..good() }, Err(VerifyError::Expired)),
            ("future timestamp", Delivery { now: ts - limit - 1, ..good() }, Err(VerifyError::Future)),
            ("empty signature header", Delivery { signature: String::new(), ..good() }, malformed_sig),
            (
                "signature without version",
                Delivery { signature: value(&good().signature), ..good() },
                malformed_sig,
            ),
            ("signature not base64", Delivery { signature: "v1,!!!!".to_owned(), ..good() }, malformed_sig),
            (
                "signature of the wrong length",
                Delivery { signature: format!("v1,{}", BASE64.encode([0u8; 16])), ..good() },
                malformed_sig,
            ),
            (
                "malformed entry beside a matching signature",
                Delivery { signature: format!("{} v1", good().signature), ..good() },
                malformed_sig,
            ),
            ("empty id", Delivery { id: "", ..good() }, Err(VerifyError::Malformed(HEADER_ID))),
            (
                "fractional timestamp",
                Delivery { timestamp: format!("{ts}.0"), ..good() },
                Err(VerifyError::Malformed(HEADER_TIMESTAMP)),
            ),
            // Signed over the text as sent, so only the timestamp's format refuses it.
            (
                "timestamp with a plus sign",
                {
                    let plus = format!("+{ts}");
                    let signature = format!("v1,{}", BASE64.encode(ours.tag(id, &plus, body.as_bytes())));
                    Delivery { timestamp: plus, signature, ..good() }
                },
                Err(VerifyError::Malformed(HEADER_TIMESTAMP)),
            ),
        ]
    }

    fn error_name(result: &Result<(), VerifyError>) -> Option<&'static str> {
        result.as_ref().err().map(|e| match e {
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Expired => "expired",
            VerifyError::Future => "future",
            VerifyError::NoMatch => "no_match",
        })
    }

    fn vectors_json() -> String {
        let cases: Vec<_> = vectors()
            .into_iter()
            .map(|(name, d, expected)| {
                serde_json::json!({
                    "name": name,
                    "secret": d.secret.encoded(),
                    "id": d.id,
                    "timestamp": d.timestamp,
                    "signature": d.signature,
                    "body": d.body,
                    "now": d.now,
                    "valid": expected.is_ok(),
                    "error": error_name(&expected),
                })
            })
            .collect();
        let file = serde_json::json!({
            "description": "Webhook signature test vectors, written by keyward-core's webhook_signature tests. Headers webhook-id = id, webhook-timestamp = timestamp, webhook-signature = signature; body is the raw body as UTF-8; now is the receiver's clock in unix seconds.",
            "tolerance_seconds": DEFAULT_TOLERANCE.as_secs(),
            "vectors": cases,
        });
        serde_json::to_string_pretty(&file).expect("serializable") + "\n"
    }

    #[test]
    fn every_vector_gets_its_expected_verdict() {
        for (name, delivery, expected) in vectors() {
            assert_eq!(delivery.verdict(DEFAULT_TOLERANCE), expected, "{name}");
        }
    }

    #[test]
    fn the_vectors_file_is_what_the_code_computes() {
        let computed = vectors_json();
        if std::env::var_os("KEYWARD_WRITE_VECTORS").is_some() {
            std::fs::write(VECTORS_PATH, &computed).expect("write docs/webhooks/vectors.json");
            return;
        }
        assert!(
            VECTORS_FILE == computed,
            "docs/webhooks/vectors.json is stale: rerun with KEYWARD_WRITE_VECTORS=1 to rewrite it"
        );
    }

    #[test]
    fn the_vectors_file_holds_both_verdicts_of_every_kind() {
        let file: serde_json::Value = serde_json::from_str(VECTORS_FILE).expect("JSON");
        let cases = file["vectors"].as_array().expect("a list");
        for wanted in [None, Some("no_match"), Some("expired"), Some("future"), Some("malformed")] {
            let found = cases.iter().any(|c| c["error"].as_str() == wanted);
            assert!(found, "no vector with error {wanted:?}");
        }
        // The file's own fields, read back, give the same verdicts.
        for c in cases {
            let text = |k: &str| c[k].as_str().expect("a string").to_owned();
            let secret = WebhookSecret::parse(&text("secret")).expect("secret");
            let now = at(c["now"].as_i64().expect("now"));
            let result = verify(
                &secret,
                &text("id"),
                &text("timestamp"),
                &text("signature"),
                text("body").as_bytes(),
                now,
                DEFAULT_TOLERANCE,
            );
            assert_eq!(error_name(&result), c["error"].as_str(), "{}", text("name"));
            assert_eq!(result.is_ok(), c["valid"].as_bool().expect("valid"), "{}", text("name"));
        }
    }
}
