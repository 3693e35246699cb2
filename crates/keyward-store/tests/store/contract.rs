//! The backend-independent contract suite, on SQLite files.

use crate::common::fresh;

keyward_store::keyward_store_contract!(fresh());

/// The `optional` form, as a backend whose database may be absent uses it.
mod optional_form {
    use std::sync::Arc;

    use keyward_core::testing::InstrumentedStore;

    use crate::common::fresh;

    // One case each way is enough to show the form expands and skips.
    keyward_store::keyward_store_contract!(@each [optional] async { Some(fresh().await) };
        find_key_by_digest);

    mod absent {
        use super::*;
        keyward_store::keyward_store_contract!(@each [optional] async { None::<Arc<InstrumentedStore>> };
            find_key_by_digest);
    }
}
