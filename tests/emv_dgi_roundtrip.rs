//! Property tests: DGIs built from arbitrary data parse back to the same DGIs, and
//! arbitrary bytes never make the DGI or TLV parsers panic.

use proptest::prelude::*;
use station_emv::dgi::{self, Dgi, DgiEncryption};
use station_emv::tlv;

proptest! {
    #[test]
    fn built_dgis_parse_back_identically(
        items in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600)), 0..8)
    ) {
        let mut wire = Vec::new();
        for (id, data) in &items {
            wire.extend(Dgi::new(*id, data.clone(), DgiEncryption::None).to_bytes().unwrap());
        }
        let back = dgi::parse(&wire).unwrap();
        prop_assert_eq!(back.len(), items.len());
        for (d, (id, data)) in back.iter().zip(&items) {
            prop_assert_eq!(d.id, *id);
            prop_assert_eq!(&d.data, data);
        }
    }

    #[test]
    fn the_length_form_switches_at_255_bytes(len in 0usize..1000) {
        let b = Dgi::new(0x0101, vec![0xA5; len], DgiEncryption::None).to_bytes().unwrap();
        let header = if len <= 254 { 3 } else { 5 };
        prop_assert_eq!(b.len(), header + len);
        prop_assert_eq!(b[2] == 0xFF, len > 254);
    }

    #[test]
    fn dgi_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = dgi::parse(&bytes);
    }

    #[test]
    fn record_templates_survive_the_dgi_wire(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..5)
    ) {
        let mut body = Vec::new();
        for (i, v) in values.iter().enumerate() {
            body.extend(tlv::encode(0x9F50 + i as u32, v));
        }
        let rec = tlv::encode(0x70, &body);
        let wire = Dgi::new(0x0201, rec.clone(), DgiEncryption::None).to_bytes().unwrap();
        let back = dgi::parse(&wire).unwrap();
        let top = tlv::parse(&back[0].data).unwrap();
        prop_assert_eq!(top.len(), 1);
        prop_assert_eq!(top[0].tag, 0x70);
        prop_assert_eq!(top[0].children().unwrap().len(), values.len());
    }
}

#[test]
fn a_dgi_of_65536_bytes_cannot_be_encoded() {
    assert!(Dgi::new(0x8201, vec![0; 65_536], DgiEncryption::Pad)
        .to_bytes()
        .is_err());
}
