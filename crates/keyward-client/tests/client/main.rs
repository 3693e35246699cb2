//! keyward-client's tests: the generated code is current, 429s are retried as the policy says,
//! catalog errors are typed, and the key never shows in `Debug`.

mod codegen;
mod errors;
mod retry;
mod support;
