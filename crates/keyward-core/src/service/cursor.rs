//! Opaque page cursors.

use base64::Engine as _;

use crate::error::Error;

/// Cursors are the last item's id, base64url-encoded: opaque to callers, stable under inserts
/// because ids are time-ordered and listing is keyset-based.
pub(super) fn encode_cursor(id: uuid::Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub(super) fn decode_cursor(cursor: &str) -> Result<uuid::Uuid, Error> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| uuid::Uuid::from_slice(&b).ok())
        .ok_or_else(|| Error::validation("cursor", "not a cursor returned by this API"))
}

pub(super) fn next_cursor<T>(
    items: &mut Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Option<String> {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| encode_cursor(id(last)))
    } else {
        None
    }
}
