//! The inventory reader on arbitrary bytes: it must never panic, whatever the input.
#![no_main]

use kfp_mesh_core::inventory::{Inventory, parse_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (objects, errors) = parse_stream("fuzz", &text);
    let _ = Inventory::from_objects(objects, errors);
});
