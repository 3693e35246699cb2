//! Importing keys issued by another system, by their SHA-256 digest.

use std::collections::HashMap;

use super::keys::{new_record, validate_new_key};
use super::{Actor, KeyService, NewKey};
use crate::error::{Error, ErrorCode};
use crate::hash::{KeyDigest, KeyHash};
use crate::model::{ApiKey, AuditAction, WorkspaceId};
use crate::store::StoreError;

/// Most keys one [`KeyService::import_keys`] call takes.
pub const MAX_IMPORT_KEYS: usize = 1000;

/// A key issued elsewhere: its SHA-256 digest (never its plaintext) and the usual settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedKey {
    /// Settings, as for a new key (its `workspace_id` is the import's).
    pub key: NewKey,
    /// SHA-256 of the whole plaintext key.
    pub digest: KeyDigest,
    /// What to show of the key's start (at most 12 characters); empty when unknown.
    pub prefix: String,
    /// What to show of the key's end (at most 4 characters); empty when unknown.
    pub last4: String,
}

impl KeyService {
    /// Imports up to [`MAX_IMPORT_KEYS`] keys into `workspace`, all or none, each with a
    /// `key.imported` audit event. Imported keys are stored under plain SHA-256 (pepper id
    /// `None`), so a peppered deployment needs [`KeyHasher::with_plain_fallback`] to verify
    /// them; the verifier accepts their plaintext with a
    /// [`LegacyFormat`](crate::LegacyFormat) when it is not keyward's format.
    ///
    /// Errors name the row (`keys[i].field` in `VALIDATION_FAILED`, `row` in the details):
    /// `VALIDATION_FAILED`, `INSUFFICIENT_SCOPE`/`RESOURCE_NOT_ALLOWED` (wider than the actor),
    /// `CONFLICT` (a digest given twice or already stored), `NOT_FOUND` (workspace),
    /// `FEATURE_NOT_IN_PLAN`, `KEY_LIMIT_REACHED`.
    ///
    /// [`KeyHasher::with_plain_fallback`]: crate::KeyHasher::with_plain_fallback
    pub async fn import_keys(
        &self,
        workspace: WorkspaceId,
        keys: Vec<ImportedKey>,
        actor: &Actor,
    ) -> Result<Vec<ApiKey>, Error> {
        if keys.is_empty() || keys.len() > MAX_IMPORT_KEYS {
            return Err(Error::validation("keys", format!("1 to {MAX_IMPORT_KEYS} keys per call")));
        }
        let now = self.clock.now();
        let ws = self.get_workspace(workspace).await?;
        let plan = self.plan_allowing_api(&ws).await?;
        let mut seen = HashMap::with_capacity(keys.len());
        let mut records = Vec::with_capacity(keys.len());
        for (i, mut row) in keys.into_iter().enumerate() {
            row.key.workspace_id = ws.id;
            validate_new_key(&mut row.key, actor, now).map_err(|e| in_row(e, i))?;
            if row.prefix.chars().count() > 12 || row.last4.chars().count() > 4 {
                let field = if row.prefix.chars().count() > 12 { "prefix" } else { "last4" };
                return Err(in_row(
                    Error::validation(field, "too long (prefix: 12, last4: 4 characters)"),
                    i,
                ));
            }
            if let Some(first) = seen.insert(row.digest, i) {
                return Err(duplicate(i).with_detail("duplicateOf", first));
            }
            if self.store.find_key_by_digest(&row.digest).await?.is_some() {
                return Err(duplicate(i));
            }
            let hash = KeyHash { digest: row.digest, pepper_id: None };
            let mut key = new_record(row.key, &ws, row.prefix, row.last4, hash, actor, now);
            key.imported_at = Some(now);
            let ev = self.event(AuditAction::KeyImported, Some(ws.id), Some(key.id), actor);
            records.push((key, ev));
        }
        match self.store.insert_keys(&records, plan.max_keys).await {
            Ok(()) => {}
            // Stored by someone else since the check above.
            Err(StoreError::Duplicate) => {
                return Err(Error::new(ErrorCode::Conflict, "a key with one of these digests exists"));
            }
            Err(e) => return Err(e.into()),
        }
        let keys: Vec<ApiKey> = records.into_iter().map(|(k, _)| k).collect();
        // A verifier may hold a negative entry for a key tried before it was imported.
        for key in &keys {
            self.notify(key).await;
        }
        Ok(keys)
    }
}

fn duplicate(row: usize) -> Error {
    Error::new(ErrorCode::Conflict, format!("keys[{row}]: a key with this digest exists"))
        .with_detail("field", format!("keys[{row}].digest"))
        .with_detail("row", row)
}

/// `e` about row `i`: a validation error names `keys[i].field`; every error says `row`.
fn in_row(e: Error, i: usize) -> Error {
    let e = match (e.code(), e.details().get("field").and_then(|f| f.as_str())) {
        (ErrorCode::ValidationFailed, Some(field)) => {
            let reason = e.details().get("reason").and_then(|r| r.as_str()).unwrap_or("invalid").to_owned();
            Error::validation(&format!("keys[{i}].{field}"), reason)
        }
        _ => e,
    };
    e.with_detail("row", i)
}
