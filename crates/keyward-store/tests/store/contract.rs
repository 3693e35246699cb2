//! The backend-independent contract suite, on SQLite files.

use crate::common::TestStore;

keyward_store::keyward_store_contract!(TestStore::fresh());

/// The `optional` form, as a backend whose database may be absent uses it.
mod optional_form {
    use std::sync::Arc;

    use crate::common::TestStore;

    // One case each way is enough to show the form expands and skips.
    keyward_store::keyward_store_contract!(@each [optional] async { Some(TestStore::fresh().await) };
        find_key_by_digest);

    mod absent {
        use super::*;
        keyward_store::keyward_store_contract!(@each [optional] async { None::<Arc<TestStore>> };
            find_key_by_digest);
    }
}
