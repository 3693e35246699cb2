//! The `/v1` handlers.

pub(crate) mod audit;
pub(crate) mod keys;
pub(crate) mod status;
pub(crate) mod workspaces;

use keyward_core::Error;

use crate::error::ApiError;

/// Parses an optional page size.
pub(crate) fn parse_limit(raw: Option<&str>) -> Result<Option<u32>, ApiError> {
    raw.map(|s| {
        s.parse::<u32>().map_err(|_| ApiError::validation("limit", "must be a whole number from 1 to 100"))
    })
    .transpose()
}

/// Parses scopes, naming the offending entry.
pub(crate) fn parse_scopes(field: &str, raw: &[String]) -> Result<keyward_core::ScopeSet, ApiError> {
    raw.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse().map_err(|e: keyward_core::ScopeParseError| {
                ApiError(Error::validation(&format!("{field}[{i}]"), e.to_string()))
            })
        })
        .collect()
}
