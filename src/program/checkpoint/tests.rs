//! The checkpoints' tests.

use super::*;

/// Only the folders a save makes are ever removed: not a user's own `step-...` folder.
#[test]
fn weights_folders_are_the_names_saves_give() {
    for ours in [
        "step-000200",
        "step-1234567",
        "step-000200-1",
        "step-000200-12",
        "step-000200.tmp-4242",
        "step-000200-1.tmp-7",
    ] {
        assert!(is_weights_folder(ours), "{ours}");
    }
    for theirs in [
        "step-notes",
        "step-000100-best",
        "step-00020",
        "step-",
        "step-000200.tmp-",
        "step-000200.tmp-x",
        "steps-000200",
        "step-000200-",
    ] {
        assert!(!is_weights_folder(theirs), "{theirs}");
    }
}
