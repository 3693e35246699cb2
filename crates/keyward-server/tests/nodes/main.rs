//! Several nodes of `keyward serve` on one PostgreSQL schema and one Redis: two in-process
//! servers on `127.0.0.1:0`, each with its own service, verifier and cache, as two processes
//! would be. Needs `KEYWARD_TEST_POSTGRES_URL` (and `KEYWARD_TEST_REDIS_URL` for shared limits):
//! unset, each test prints that it was skipped; set but unreachable, each test fails.
//!
//! Speeds are measured and printed (`--nocapture`), never asserted.

mod binary;
mod concurrency;
mod health;
mod limits;
mod outage;
mod propagation;
mod support;
