use super::*;
use crate::gp::card::CardChannel;
use crate::gp::host::HostChannel;
use async_trait::async_trait;
use station_hal::{ApduTransport, TransportError};
use std::collections::VecDeque;

/// Runs a future to completion on this thread; the scripted transport never waits.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Answers with scripted responses and keeps what it was sent.
struct Script {
    replies: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
}

#[async_trait]
impl ApduTransport for Script {
    async fn transmit(&mut self, c: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sent.push(c.to_vec());
        Ok(self.replies.pop_front().unwrap_or(vec![0x6F, 0x00]))
    }
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn keys(enc: &str, mac: &str, dek: &str) -> KeySource {
    KeySource::Static(StaticKeys::new(&h(enc), &h(mac), &h(dek)))
}

async fn open(
    protocol: Protocol,
    level: u8,
    keys: &KeySource,
    host: &str,
    iu_response: &str,
) -> (HostChannel, Script) {
    let mut t = Script {
        replies: [h(&format!("{iu_response}9000")), h("9000")].into(),
        sent: vec![],
    };
    let params = ScpParams {
        protocol,
        kvn: 0x30,
        level: SecurityLevel(level),
    };
    let host: [u8; 8] = h(host).try_into().unwrap();
    let (ch, count) = HostChannel::open(&mut t, keys, params, host).await.unwrap();
    assert_eq!(count, 2);
    (ch, t)
}

#[test]
fn scp02_i55_external_authenticate_and_c_mac_match_the_vector() {
    block_on(async {
        let k = keys(
            "100102030405060708090a0b0c0d0e0f",
            "101102030405060708090a0b0c0d0e0f",
            "102102030405060708090a0b0c0d0e0f",
        );
        let (mut ch, t) = open(
            Protocol::Scp02 { i: 0x55 },
            0x01,
            &k,
            "40A62C37FA6304F8",
            "00000000000000000000700200016B4524ABEE7CF32EA3838BC148F3",
        )
        .await;
        assert_eq!(t.sent[1], h("8482010010BA6961667737C5BCEBECE14C7D6A4376"));
        let next = Command::parse(&h("80F22002")).unwrap();
        assert_eq!(ch.wrap(&next).unwrap(), h("84F220020814DB34FA4341DCA8"));
    });
}

#[test]
fn scp03_aes128_c_mac_session_matches_the_vector() {
    block_on(async {
        let k = keys(
            "000102030405060708090a0b0c0d0e0f",
            "101112131415161718191a1b1c1d1e1f",
            "202122232425262728292a2b2c2d2e2f",
        );
        let (mut ch, t) = open(
            Protocol::Scp03 { i: 0x70 },
            0x11,
            &k,
            "b13e5f938fc108c4",
            "000000000000000000003003703eb51047495b249f66c484c1d2ef1948000002",
        )
        .await;
        assert_eq!(t.sent[0], h("8050300008b13e5f938fc108c400"));
        assert_eq!(t.sent[1], h("84821100107d5f5826a993ebc89eea24957fa0b3ce"));
        let next = Command::parse(&h("80E2910006BF3E035C015A00")).unwrap();
        assert_eq!(
            ch.wrap(&next).unwrap(),
            h("84e291000ebf3e035c015a558d036518a2829700")
        );
    });
}

#[test]
fn scp03_aes128_c_dec_and_c_mac_session_matches_the_vector() {
    block_on(async {
        let k = keys(
            "000102030405060708090a0b0c0d0e0f",
            "101112131415161718191a1b1c1d1e1f",
            "202122232425262728292a2b2c2d2e2f",
        );
        let (mut ch, t) = open(
            Protocol::Scp03 { i: 0x70 },
            0x03,
            &k,
            "8e1552d0513c60f3",
            "0000000000000000000030037030760cd2c47c1dd395065fe5ead8a9d7000001",
        )
        .await;
        assert_eq!(t.sent[1], h("8482030010fd4721a14d9b07003c451d2f8ae6bb21"));
        let next = Command::parse(&h("80E2910006BF3E035C015A00")).unwrap();
        assert_eq!(
            ch.wrap(&next).unwrap(),
            h("84e2910018ca9c00f6713d79bc8baa642bdff51c3f6a4082d3bd9ad26c00")
        );
    });
}

#[test]
fn a_card_with_other_keys_is_reported_as_a_transport_key_mismatch() {
    block_on(async {
        let wrong = keys(
            "000102030405060708090a0b0c0d0e0f",
            "000102030405060708090a0b0c0d0e0f",
            "000102030405060708090a0b0c0d0e0f",
        );
        let mut t = Script {
            replies: [h(
                "00000000000000000000700200016B4524ABEE7CF32EA3838BC148F39000",
            )]
            .into(),
            sent: vec![],
        };
        let params = ScpParams {
            protocol: Protocol::Scp02 { i: 0x55 },
            kvn: 0,
            level: SecurityLevel::CMAC,
        };
        let e = HostChannel::open(
            &mut t,
            &wrong,
            params,
            [0x40, 0xA6, 0x2C, 0x37, 0xFA, 0x63, 0x04, 0xF8],
        )
        .await
        .unwrap_err();
        assert_eq!(e, ScError::CardCryptogram);
        assert!(e.to_string().contains("transport key"));
    });
}

fn round_trip(protocol: Protocol, level: SecurityLevel, keys: StaticKeys) {
    let host = [9u8; 8];
    let seq = match protocol {
        Protocol::Scp02 { .. } => vec![0, 7],
        Protocol::Scp03 { .. } => vec![0, 0, 7],
    };
    let challenge = match protocol {
        Protocol::Scp02 { .. } => vec![1; 6],
        Protocol::Scp03 { .. } => vec![1; 8],
    };
    let (mut card, iu) =
        CardChannel::initialize_update(protocol, keys.clone(), [3; 10], 0x20, seq, challenge, host)
            .unwrap();
    let iu = InitUpdateResponse::parse(&iu).unwrap();
    let (s, c) = derive_session(protocol, &keys, &host, &iu).unwrap();
    assert_eq!(c.card, iu.card_cryptogram);
    let mut host_w = Wrapper::new(protocol, s, SecurityLevel::CMAC);
    let ea = host_w
        .wrap(&Command::new(0x80, 0x82, level.0, 0, c.host.to_vec()))
        .unwrap();
    card.external_authenticate(&ea).unwrap();
    host_w.level = level;
    host_w.counter = 0;
    for n in 0..5u8 {
        let cmd = Command::new(0x80, 0xE2, 0, n, vec![n; 20 + n as usize * 37]);
        let sent = host_w.wrap(&cmd).unwrap();
        let got = card.unwrap(&sent).unwrap();
        assert_eq!(got, cmd, "command {n}");
    }
    let mut tampered = host_w
        .wrap(&Command::new(0x80, 0xE2, 0, 9, vec![1, 2, 3]))
        .unwrap();
    tampered.data[0] ^= 1;
    assert!(card.unwrap(&tampered).is_err());
}

#[test]
fn card_side_accepts_what_the_host_wraps_in_every_protocol_and_level() {
    let k16 = StaticKeys::new(&[0x41; 16], &[0x42; 16], &[0x43; 16]);
    let k32 = StaticKeys::new(&[0x41; 32], &[0x42; 32], &[0x43; 32]);
    for level in [SecurityLevel::CMAC, SecurityLevel::CDEC_CMAC] {
        round_trip(Protocol::Scp02 { i: 0x55 }, level, k16.clone());
        round_trip(Protocol::Scp02 { i: 0x15 }, level, k16.clone());
        round_trip(Protocol::Scp03 { i: 0x70 }, level, k16.clone());
        round_trip(Protocol::Scp03 { i: 0x70 }, level, k32.clone());
    }
}

#[test]
fn the_largest_clear_payload_fits_one_short_apdu_after_wrapping() {
    for (p, l) in [
        (Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMAC),
        (Protocol::Scp02 { i: 0x55 }, SecurityLevel::CDEC_CMAC),
        (Protocol::Scp03 { i: 0x70 }, SecurityLevel::CDEC_CMAC),
    ] {
        let n = max_plain_data(p, l);
        let keys = SessionKeys {
            enc: Zeroizing::new(vec![1; 16]),
            mac: Zeroizing::new(vec![2; 16]),
            dek: Zeroizing::new(vec![3; 16]),
        };
        let mut w = Wrapper::new(p, keys, l);
        let wrapped = w.wrap(&Command::new(0x80, 0xE2, 0, 0, vec![0; n])).unwrap();
        assert!(wrapped.data.len() <= 255, "{p:?} {l:?} {n}");
        let mut w2 = Wrapper::new(
            p,
            SessionKeys {
                enc: Zeroizing::new(vec![1; 16]),
                mac: Zeroizing::new(vec![2; 16]),
                dek: Zeroizing::new(vec![3; 16]),
            },
            l,
        );
        assert!(
            w2.wrap(&Command::new(0x80, 0xE2, 0, 0, vec![0; n + 1]))
                .unwrap()
                .data
                .len()
                > 255
        );
    }
}

#[test]
fn a_kmc_key_source_debug_shows_the_method_never_the_key() {
    let kmc = h("404142434445464748494A4B4C4D4E4F");
    let source = KeySource::Kmc {
        kmc: Zeroizing::new(kmc.clone()),
        method: Diversification::EmvCpg202,
    };
    let shown = format!("{source:?}");
    assert!(shown.contains("EmvCpg202"), "{shown}");
    assert!(!shown.contains("64, 65, 66"), "{shown}");
    assert!(!shown.to_uppercase().contains("404142"), "{shown}");
}
