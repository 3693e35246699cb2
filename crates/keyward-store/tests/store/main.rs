//! Integration tests of `keyward-store`: the contract suite on SQLite, and SQLite's own tests.

mod common;
mod contract;
mod sqlite;
