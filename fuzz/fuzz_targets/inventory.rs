//! The inventory reader on arbitrary bytes: it must never panic, whatever the input (bytes that
//! are not UTF-8 included: `parse_bytes` is what the CLI reads files and stdin with).
#![no_main]

use kfp_mesh_core::inventory::{Inventory, parse_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (objects, errors) = parse_bytes("fuzz", data);
    let _ = Inventory::from_objects(objects, errors);
});
