//! The audit log and usage.

use chrono::{Duration, NaiveDate};

use super::cursor::{decode_cursor, next_cursor};
use super::validate::page_size;
use super::{AuditFilter, KeyService, Page};
use crate::error::Error;
use crate::model::{AuditEvent, AuditEventId, KeyId, UsageDay, WorkspaceId};
use crate::store::AuditQuery;

impl KeyService {
    /// A page of a workspace's audit events (or every workspace's, with `None`), newest first.
    pub async fn audit_events(
        &self,
        workspace: Option<WorkspaceId>,
        filter: AuditFilter,
    ) -> Result<Page<AuditEvent>, Error> {
        let limit = page_size(filter.limit)?;
        let before = filter.cursor.as_deref().map(decode_cursor).transpose()?.map(AuditEventId);
        let mut items = self
            .store
            .list_audit(&AuditQuery {
                workspace_id: workspace,
                key_id: filter.key_id,
                action: filter.action,
                since: filter.since,
                until: filter.until,
                before,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = next_cursor(&mut items, limit, |e| e.id.0);
        Ok(Page { items, next_cursor })
    }

    /// Deletes audit events older than the retention period; returns how many.
    pub async fn purge_audit(&self) -> Result<u64, Error> {
        Ok(self.store.purge_audit(self.clock.now() - self.audit_retention).await?)
    }

    /// A key's daily usage over the last `days` days (today included).
    pub async fn usage(&self, workspace: WorkspaceId, id: KeyId, days: u32) -> Result<Vec<UsageDay>, Error> {
        if !(1..=366).contains(&days) {
            return Err(Error::validation("days", "must be between 1 and 366"));
        }
        let key = self.get_key(workspace, id).await?;
        let to: NaiveDate = self.clock.now().date_naive();
        let from = to - Duration::days(i64::from(days) - 1);
        Ok(self.store.usage(key.id, from, to).await?)
    }
}
