//! Per-key limits on requests in flight.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use crate::error::{Error, ErrorCode};
use crate::model::KeyId;

/// Counts a key's requests in flight; the slot is given back on drop.
pub(super) struct ConcurrencyPermit {
    key: KeyId,
    table: Arc<Mutex<HashMap<KeyId, u32>>>,
}

impl fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyPermit").field("key", &self.key).finish()
    }
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.key);
            }
        }
    }
}

impl ConcurrencyPermit {
    /// Takes one of `max` slots of `key` in `table`, or refuses with `CONCURRENCY_LIMITED`.
    pub(super) fn acquire(
        table: &Arc<Mutex<HashMap<KeyId, u32>>>,
        key: KeyId,
        max: u32,
    ) -> Result<Self, Error> {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.entry(key).or_insert(0);
        if *n >= max {
            return Err(Error::new(
                ErrorCode::ConcurrencyLimited,
                "too many requests in flight for this key",
            )
            .with_detail("limit", max)
            .with_retry_after(Duration::from_secs(1)));
        }
        *n += 1;
        Ok(ConcurrencyPermit { key, table: table.clone() })
    }
}
