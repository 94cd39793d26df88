//! The fast YAML path against serde-saphyr on arbitrary text: whatever the fast path reads, it
//! reads to the value serde-saphyr reads (which must not fail on it), and it never panics.
#![no_main]

use kfp_mesh_core::yaml::{read_block_document, read_with_saphyr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fast) = read_block_document(doc) {
        let fast = Some(fast).filter(|v| !v.is_null());
        assert_eq!(Ok(fast), read_with_saphyr(doc), "{doc:?}");
    }
});
