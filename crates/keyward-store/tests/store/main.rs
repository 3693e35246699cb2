//! Integration tests of `keyward-store`: the contract suite on SQLite and on PostgreSQL (when
//! `KEYWARD_TEST_POSTGRES_URL` is set), and each backend's own tests.

mod audit_chain;
mod common;
mod contract;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
