//! End-to-end tests of the management API over a real socket, on a real SQLite file.

mod allowlist;
mod audit_chain;
mod binary;
mod config_file;
mod connected;
mod dashboard;
mod errors;
mod health;
mod import;
mod keys;
mod leaks;
mod observability;
mod pinned;
mod receiver;
mod security;
mod spec;
mod support;
mod transport;
mod verifier;
mod webhooks;
mod workspaces;
