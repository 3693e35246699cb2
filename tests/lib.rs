//! End-to-end tests across keyward's crates live in `e2e/`: the management server runs
//! in-process on `127.0.0.1:0` over a real SQLite file and is driven only through
//! `keyward-client`. Run them with `cargo test -p keyward-tests`.
