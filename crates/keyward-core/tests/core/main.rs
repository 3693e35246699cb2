//! Integration tests of keyward-core, compiled into one binary.

mod metrics;
mod props;
mod rules;
mod verifier;
