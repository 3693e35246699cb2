//! The audit log's hash chain: each event of a workspace carries a SHA-256 over its own contents,
//! its position in the workspace's chain and the hash of the event before it, written in the
//! same transaction as the change it records. Editing, deleting or reordering an event breaks
//! the chain at that event; a store reports the first broken link ([`KeyStore::verify_audit`]).
//!
//! Purging old events (the retention) keeps the chain verifiable: the store keeps the position
//! and hash of the last purged event of each chain as its anchor. What the chain cannot prove
//! by itself is that its newest events were not cut off together with the head that points at
//! them: compare a head exported earlier (`keyward audit verify --expect`) for that.
//!
//! [`KeyStore::verify_audit`]: crate::KeyStore::verify_audit

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{AuditEvent, AuditEventId, WorkspaceId};

/// A link's hash, 32 bytes shown as 64 lowercase hex digits.
pub type LinkHash = [u8; 32];

/// The hash the first event of a chain follows.
pub const GENESIS: LinkHash = [0; 32];

/// The hash of `event` at position `seq` (1 for the first) after `prev`: SHA-256 over a
/// canonical encoding (a version tag, then every field length-prefixed, times in
/// milliseconds, absent fields empty).
pub fn link(event: &AuditEvent, seq: u64, prev: &LinkHash) -> LinkHash {
    fn field(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    }
    fn opt(h: &mut Sha256, value: Option<String>) {
        field(h, value.as_deref().unwrap_or("").as_bytes());
    }
    let mut h = Sha256::new();
    h.update(b"keyward-audit-v1");
    field(&mut h, &seq.to_be_bytes());
    field(&mut h, prev);
    field(&mut h, event.id.to_string().as_bytes());
    opt(&mut h, event.workspace_id.map(|w| w.to_string()));
    field(&mut h, event.action.as_str().as_bytes());
    opt(&mut h, event.key_id.map(|k| k.to_string()));
    opt(&mut h, event.actor_key_id.map(|k| k.to_string()));
    opt(&mut h, event.ip.clone());
    opt(&mut h, event.user_agent.clone());
    opt(&mut h, event.request_id.clone());
    field(&mut h, &event.at.timestamp_millis().to_be_bytes());
    h.finalize().into()
}

/// Lowercase hex of a link hash.
pub fn to_hex(hash: &LinkHash) -> String {
    hex::encode(hash)
}

/// A link hash from its hex form.
pub fn from_hex(hex: &str) -> Option<LinkHash> {
    let mut out = [0; 32];
    hex::decode_to_slice(hex, &mut out).ok().map(|()| out)
}

/// A chain's head as exported earlier (`keyward audit verify` prints them): the chain must
/// still hold that hash at that position. Written `WORKSPACE=SEQ:HASH`, `-` for the chain of
/// events without a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHead {
    /// The chain.
    pub workspace_id: Option<WorkspaceId>,
    /// The position.
    pub seq: u64,
    /// The hash there.
    pub hash: LinkHash,
}

impl std::str::FromStr for KnownHead {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected WORKSPACE=SEQ:HASH (`-` for no workspace), got {s:?}");
        let (ws, rest) = s.split_once('=').ok_or_else(bad)?;
        let (seq, hash) = rest.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            workspace_id: match ws {
                "-" => None,
                id => Some(id.parse().map_err(|_| bad())?),
            },
            seq: seq.parse().map_err(|_| bad())?,
            hash: from_hex(hash).ok_or_else(bad)?,
        })
    }
}

impl std::fmt::Display for KnownHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.workspace_id {
            Some(ws) => write!(f, "{ws}={}:{}", self.seq, to_hex(&self.hash)),
            None => write!(f, "-={}:{}", self.seq, to_hex(&self.hash)),
        }
    }
}

/// The first place a chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokenLink {
    /// The position the chain breaks at.
    pub seq: u64,
    /// The event found there, if any (`None`: it is missing).
    pub event_id: Option<AuditEventId>,
    /// What is wrong, e.g. "the event's contents do not match its hash".
    pub reason: String,
}

/// What verifying one chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    /// The chain's workspace; `None` for events of no workspace (plan changes).
    pub workspace_id: Option<WorkspaceId>,
    /// Events checked.
    pub events: u64,
    /// The position of the last purged event (0 when none was purged): the chain starts after it.
    pub anchor_seq: u64,
    /// The position of the newest event, as the chain's head records it.
    pub head_seq: u64,
    /// The head's hash (hex): keep it somewhere the database's administrators cannot write, and
    /// compare it later.
    pub head_hash: String,
    /// The first broken link; `None` when the whole chain holds.
    pub broken: Option<BrokenLink>,
}

/// Checks the events of one chain, in position order, against its anchor and head.
#[derive(Debug)]
pub struct ChainCheck {
    report: ChainReport,
    expect_seq: u64,
    prev: LinkHash,
    /// A position and hash the chain must still hold (a head exported earlier).
    known: Option<(u64, LinkHash)>,
}

impl ChainCheck {
    /// A check of the chain of `workspace_id` that starts after `anchor` and ends at `head`.
    pub fn new(workspace_id: Option<WorkspaceId>, anchor: (u64, LinkHash), head: (u64, LinkHash)) -> Self {
        Self {
            report: ChainReport {
                workspace_id,
                events: 0,
                anchor_seq: anchor.0,
                head_seq: head.0,
                head_hash: to_hex(&head.1),
                broken: None,
            },
            expect_seq: anchor.0 + 1,
            prev: anchor.1,
            known: None,
        }
    }

    /// Also checks that the chain still holds `hash` at position `seq`: a head exported earlier,
    /// which a rewrite of the chain (hashes recomputed, head moved) cannot keep. A position
    /// purged since (before the anchor) cannot be checked and is let pass.
    pub fn expect(&mut self, seq: u64, hash: LinkHash) {
        if seq == self.report.anchor_seq && hash != self.prev {
            self.report.broken = Some(BrokenLink {
                seq,
                event_id: None,
                reason: "the chain's anchor differs from the head exported earlier".into(),
            });
        }
        if seq > self.report.anchor_seq {
            self.known = Some((seq, hash));
        }
    }

    /// Whether a broken link was found (later events need not be read).
    pub fn is_broken(&self) -> bool {
        self.report.broken.is_some()
    }

    /// Checks the next event, stored at `seq` with `prev_hash` and `hash`.
    pub fn next(&mut self, event: &AuditEvent, seq: u64, prev_hash: &str, hash: &str) {
        if self.is_broken() {
            return;
        }
        let broken = |reason: &str, event_id| BrokenLink { seq, event_id, reason: reason.to_owned() };
        self.report.broken = if seq != self.expect_seq {
            Some(BrokenLink {
                seq: self.expect_seq,
                event_id: None,
                reason: format!(
                    "the event at position {} is missing (the next one is at {seq})",
                    self.expect_seq
                ),
            })
        } else if from_hex(prev_hash) != Some(self.prev) {
            Some(broken("the event does not follow the one before it", Some(event.id)))
        } else if from_hex(hash) != Some(link(event, seq, &self.prev)) {
            Some(broken("the event's contents do not match its hash", Some(event.id)))
        } else {
            None
        };
        if !self.is_broken() {
            self.report.events += 1;
            self.expect_seq = seq + 1;
            self.prev = link(event, seq, &self.prev);
            if self.known.is_some_and(|(at, hash)| at == seq && hash != self.prev) {
                self.report.broken = Some(broken(
                    "the chain was rewritten: it differs from the head exported earlier",
                    Some(event.id),
                ));
            }
        }
    }

    /// The row at `seq` no longer reads as an event (a field was edited into something invalid).
    pub fn unreadable(&mut self, seq: u64) {
        if !self.is_broken() {
            self.report.broken =
                Some(BrokenLink { seq, event_id: None, reason: "the event no longer reads as one".into() });
        }
    }

    /// The report, once every event was given: the last one must be the head.
    pub fn finish(mut self) -> ChainReport {
        if self.report.broken.is_none()
            && let Some((at, _)) = self.known
            && at >= self.expect_seq
        {
            self.report.broken = Some(BrokenLink {
                seq: self.expect_seq,
                event_id: None,
                reason: format!("the chain ends before position {at}, a head exported earlier"),
            });
        }
        if self.report.broken.is_none() {
            let last = self.expect_seq - 1;
            if last != self.report.head_seq || Some(self.prev) != from_hex(&self.report.head_hash) {
                self.report.broken = Some(BrokenLink {
                    seq: last + 1,
                    event_id: None,
                    reason: format!(
                        "the chain ends at position {last} but its head records position {}",
                        self.report.head_seq
                    ),
                });
            }
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuditAction, KeyId};

    fn event(n: u8) -> AuditEvent {
        AuditEvent {
            id: AuditEventId::new(),
            workspace_id: Some(WorkspaceId::new()),
            action: AuditAction::KeyCreated,
            key_id: Some(KeyId::new()),
            actor_key_id: None,
            ip: Some(format!("10.0.0.{n}")),
            user_agent: None,
            request_id: None,
            at: chrono::Utc::now(),
        }
    }

    fn chain(events: &[AuditEvent]) -> Vec<(u64, String, String)> {
        let mut prev = GENESIS;
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let seq = i as u64 + 1;
                let hash = link(e, seq, &prev);
                let row = (seq, to_hex(&prev), to_hex(&hash));
                prev = hash;
                row
            })
            .collect()
    }

    fn check(events: &[AuditEvent], rows: &[(u64, String, String)], head: (u64, LinkHash)) -> ChainReport {
        let mut c = ChainCheck::new(None, (0, GENESIS), head);
        for (e, (seq, prev, hash)) in events.iter().zip(rows) {
            c.next(e, *seq, prev, hash);
        }
        c.finish()
    }

    #[test]
    fn an_intact_chain_holds_and_every_kind_of_tampering_is_found_where_it_is() {
        let events: Vec<_> = (0..4).map(event).collect();
        let rows = chain(&events);
        let head = (4, from_hex(&rows[3].2).unwrap());
        assert_eq!(check(&events, &rows, head).broken, None);

        let mut edited = events.clone();
        edited[2].ip = Some("192.0.2.1".into());
        let b = check(&edited, &rows, head).broken.unwrap();
        assert_eq!((b.seq, b.event_id), (3, Some(events[2].id)));

        let (mut gone_e, mut gone_r) = (events.clone(), rows.clone());
        gone_e.remove(1);
        gone_r.remove(1);
        let b = check(&gone_e, &gone_r, head).broken.unwrap();
        assert_eq!((b.seq, b.event_id), (2, None));

        let mut swapped = events.clone();
        swapped.swap(1, 2);
        assert_eq!(check(&swapped, &rows, head).broken.unwrap().seq, 2);

        let cut = check(&events[..3], &rows[..3], head).broken.unwrap();
        assert_eq!((cut.seq, cut.event_id), (4, None), "the newest event cut off");

        // Rewritten wholesale (event 2 edited, every later hash recomputed, the head moved): only
        // a head exported earlier tells.
        let rows2 = chain(&edited);
        let head2 = (4, from_hex(&rows2[3].2).unwrap());
        assert_eq!(check(&edited, &rows2, head2).broken, None);
        let mut c = ChainCheck::new(None, (0, GENESIS), head2);
        c.expect(3, from_hex(&rows[2].2).unwrap());
        for (e, (seq, prev, hash)) in edited.iter().zip(&rows2) {
            c.next(e, *seq, prev, hash);
        }
        assert_eq!(c.finish().broken.unwrap().seq, 3);
        // Cut back to before an exported head, head moved too.
        let mut c = ChainCheck::new(None, (0, GENESIS), (2, from_hex(&rows[1].2).unwrap()));
        c.expect(4, head.1);
        for (e, (seq, prev, hash)) in events[..2].iter().zip(&rows) {
            c.next(e, *seq, prev, hash);
        }
        assert_eq!(c.finish().broken.unwrap().seq, 3);
    }
}
