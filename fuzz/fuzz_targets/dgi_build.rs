//! DGIs built from arbitrary identifiers and data parse back identically; arbitrary
//! bytes never make the DGI parser or the Model 2 checks panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use station_emv::dgi::{self, Dgi, DgiEncryption};
use station_emv::data::prep::validate_dgis;

fuzz_target!(|input: (Vec<(u16, Vec<u8>)>, Vec<u8>)| {
    let (items, raw) = input;
    let dgis: Vec<Dgi> = items
        .iter()
        .map(|(id, data)| Dgi::new(*id, data.clone(), DgiEncryption::None))
        .collect();
    let mut wire = Vec::new();
    for d in &dgis {
        wire.extend(
            d.to_bytes()
                .expect("arbitrary data stays under 65536 bytes here"),
        );
    }
    let back = dgi::parse(&wire).expect("built DGIs must parse");
    assert_eq!(back, dgis);
    let _ = validate_dgis(&dgis, 8);
    if let Ok(parsed) = dgi::parse(&raw) {
        let _ = validate_dgis(&parsed, 16);
    }
});
