//! BER-TLV parsing of arbitrary bytes: never panics, and whatever parses re-encodes
//! to bytes that parse to the same objects (constructed values recursively).
#![no_main]

use libfuzzer_sys::fuzz_target;
use station_emv::tlv::{self, Tlv};

fn check(objects: &[Tlv], depth: usize) {
    let mut wire = Vec::new();
    for o in objects {
        wire.extend(o.to_bytes());
    }
    let again = tlv::parse(&wire).expect("re-encoded TLV must parse");
    assert_eq!(again, objects, "re-encoded TLV parses differently");
    if depth < 8 {
        for o in objects.iter().filter(|o| tlv::is_constructed(o.tag)) {
            if let Ok(children) = o.children() {
                check(&children, depth + 1);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(objects) = tlv::parse(data) {
        check(&objects, 0);
    }
    let _ = tlv::find(data, 0x57);
    let _ = tlv::parse_dol(data);
});
