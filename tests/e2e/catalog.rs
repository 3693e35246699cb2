//! The SDK's `ErrorCode` is the server's catalog, code for code.

use keyward_client::ErrorCode;

#[test]
fn every_catalog_code_is_known_to_the_sdk() {
    for code in keyward_core::ErrorCode::ALL {
        let sdk: ErrorCode =
            code.as_str().parse().unwrap_or_else(|_| panic!("the SDK lacks {}", code.as_str()));
        assert_eq!(sdk.to_string(), code.as_str());
    }
}
