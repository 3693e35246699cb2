//! keyward-tower's integration tests: real axum and tonic servers on `127.0.0.1:0`, a real
//! SQLite file store, real HTTP and gRPC clients.

mod allowlist;
mod grpc;
mod keepalive;
mod limits;
mod observability;
mod outage;
mod pinned;
mod routing;
mod support;
mod verification;
