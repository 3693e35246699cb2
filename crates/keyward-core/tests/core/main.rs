//! Integration tests of keyward-core, compiled into one binary.

mod props;
mod rules;
mod verifier;
