//! End-to-end: the real management server in-process on `127.0.0.1:0` over a SQLite file,
//! driven only through the Rust SDK (`keyward-client`).
//!
//! The SDK's retry behaviour against a stand-in server that answers `429` a set number of
//! times is tested in `crates/keyward-client/tests/client/retry.rs`.

mod catalog;
mod errors;
mod isolation;
mod lifecycle;
mod rate_limit;
mod support;
