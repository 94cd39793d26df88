//! The fast YAML path against serde-saphyr on arbitrary text: whatever the fast path reads, it
//! reads to the value serde-saphyr reads (which must not fail on it), writes as the JSON text
//! serde_json writes for that value, and it never panics.
#![no_main]

use kfp_mesh_core::yaml::{read_block_document, read_with_saphyr, write_block_document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fast) = read_block_document(doc) {
        // The JSON text written on the way is the text serde_json writes for the value.
        let mut written = Vec::new();
        assert!(write_block_document(doc, &mut written).is_some(), "{doc:?}");
        assert_eq!(serde_json::to_vec(&fast).ok(), Some(written), "{doc:?}");
        let fast = Some(fast).filter(|v| !v.is_null());
        assert_eq!(Ok(fast), read_with_saphyr(doc), "{doc:?}");
    }
});
