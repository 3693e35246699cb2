//! Input validation shared by the lifecycle rules. Every bound here is documented in the API.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};

use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::error::Error;

/// Latest year a timestamp may have: RFC 3339 writes years with exactly four digits.
pub const MAX_YEAR: i32 = 9999;
const MAX_NAME_LEN: usize = 100;
const MAX_RESOURCES: usize = 100;
const MAX_METADATA: usize = 50;

pub(super) fn validate_name(name: &str) -> Result<(), Error> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(Error::validation("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(Error::validation("name", format!("must be at most {MAX_NAME_LEN} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::validation("name", "must not contain control characters"));
    }
    Ok(())
}

pub(super) fn validate_slug(field: &str, s: &str) -> Result<(), Error> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
    if ok { Ok(()) } else { Err(Error::validation(field, "must be 1 to 64 characters of a-z, 0-9, - or _")) }
}

pub(super) fn validate_resources(resources: &[String]) -> Result<(), Error> {
    if resources.len() > MAX_RESOURCES {
        return Err(Error::validation("resources", format!("at most {MAX_RESOURCES} entries")));
    }
    if resources.iter().any(|r| r.is_empty() || r.len() > 200 || r.chars().any(char::is_control)) {
        return Err(Error::validation("resources", "each entry must be 1 to 200 printable characters"));
    }
    Ok(())
}

pub(super) fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Error> {
    if metadata.len() > MAX_METADATA {
        return Err(Error::validation("metadata", format!("at most {MAX_METADATA} entries")));
    }
    if metadata.iter().any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 512) {
        return Err(Error::validation("metadata", "keys must be 1 to 64 bytes and values at most 512"));
    }
    Ok(())
}

pub(super) fn validate_expiry(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), Error> {
    match expires_at {
        Some(t) if t <= now => Err(Error::validation("expiresAt", "must be in the future")),
        Some(t) if t.year() > MAX_YEAR => Err(Error::validation(
            "expiresAt",
            format!("must be an RFC 3339 time with a four-digit year (at most {MAX_YEAR})"),
        )),
        _ => Ok(()),
    }
}

pub(super) fn page_size(limit: Option<u32>) -> Result<u32, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(_) => Err(Error::validation("limit", format!("must be between 1 and {MAX_PAGE_SIZE}"))),
    }
}
