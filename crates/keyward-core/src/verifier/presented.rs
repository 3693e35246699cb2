//! Which key a request presents: the bearer or API-key header, never the URL.

use crate::error::{Error, ErrorCode};
use crate::format::{KeyFormat, KeyParseError, LegacyFormat};
use crate::http::RateLimitHeaders;

/// Query parameters that are refused because they look like a key sent in the URL.
pub const KEY_QUERY_PARAMS: &[&str] =
    &["api_key", "apikey", "api-key", "key", "access_token", "token", "x-api-key"];

/// Settings shared by the framework integrations.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Header holding `Bearer <key>` (lowercase), `authorization` by default.
    pub bearer_header: String,
    /// Header holding the bare key (lowercase), `x-api-key` by default.
    pub api_key_header: String,
    /// The key format, to parse keys and to spot them in query strings.
    pub format: KeyFormat,
    /// Imported keys' format, accepted without a checksum; `None` accepts only `format`.
    pub legacy: Option<LegacyFormat>,
    /// Which rate-limit headers answers carry.
    pub rate_limit_headers: RateLimitHeaders,
}

/// The credentials a request presents, as raw header values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The value of the bearer header.
    pub authorization: Option<&'a [u8]>,
    /// The value of the API-key header.
    pub api_key: Option<&'a [u8]>,
    /// The raw query string.
    pub query: Option<&'a str>,
}

impl<'a> Presented<'a> {
    /// Picks the key out of the request. Refuses keys in the URL with `API_KEY_IN_URL` (400) and
    /// requests without a key with `MISSING_API_KEY` (401). A refusal is counted as a
    /// verification (see [`metrics`](crate::metrics)).
    pub fn key(&self, config: &VerifierConfig) -> Result<&'a str, Error> {
        let picked = self.pick(config);
        if let Err(e) = &picked {
            crate::metrics::record_verification(Err(e.code()));
        }
        picked
    }

    fn pick(&self, config: &VerifierConfig) -> Result<&'a str, Error> {
        if let Some(q) = self.query
            && query_has_key(q, config.format.prefix())
        {
            return Err(Error::new(
                ErrorCode::ApiKeyInUrl,
                "API keys must not be sent in the URL; use the Authorization or X-API-Key header",
            ));
        }
        let api_key = match self.api_key {
            Some(v) => {
                Some(std::str::from_utf8(v).map_err(|_| invalid(None))?.trim()).filter(|v| !v.is_empty())
            }
            None => None,
        };
        let bearer = match self.authorization {
            Some(v) => {
                let v = std::str::from_utf8(v).map_err(|_| invalid(None))?.trim();
                let token = v
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim())
                    .filter(|t| !t.is_empty());
                match (token, api_key) {
                    (Some(t), _) => Some(t),
                    // `Authorization` may carry other credentials (e.g. for a proxy) beside X-API-Key.
                    (None, Some(_)) => None,
                    (None, None) => {
                        return Err(Error::new(
                            ErrorCode::MissingApiKey,
                            "the Authorization header must be `Bearer <key>`",
                        ));
                    }
                }
            }
            None => None,
        };
        match (api_key, bearer) {
            // Which of two different keys to trust is the caller's mistake, not ours to guess.
            (Some(a), Some(b)) if a != b => {
                return Err(Error::new(
                    ErrorCode::ConflictingApiKeys,
                    "the request sent two different API keys (X-API-Key and Authorization: Bearer); send one",
                ));
            }
            (Some(k), _) | (None, Some(k)) => return Ok(k),
            (None, None) => {}
        }
        Err(Error::new(
            ErrorCode::MissingApiKey,
            "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        ))
    }
}

fn query_has_key(query: &str, prefix: &str) -> bool {
    query.split('&').any(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        KEY_QUERY_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
            || value
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with("_live_") || rest.starts_with("_test_"))
    })
}

pub(super) fn invalid(reason: Option<KeyParseError>) -> Error {
    // A failed checksum or a wrong length is nearly always a key mistyped or cut short when
    // copied: say so, since the caller can fix that.
    let message = match reason {
        Some(KeyParseError::Checksum) => {
            "invalid API key: its checksum does not match (mistyped or truncated?)"
        }
        Some(KeyParseError::Length) => "invalid API key: it has the wrong length (truncated?)",
        _ => "invalid API key",
    };
    let e = Error::new(ErrorCode::InvalidApiKey, message);
    match reason {
        Some(r) => e.with_detail("reason", r.to_string()),
        None => e,
    }
}
