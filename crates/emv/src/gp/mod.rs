//! GlobalPlatform / ISO 7816-4 command APDUs and status words, and the secure
//! channels SCP02/SCP03: what both ends share ([`scp`]), the station's end
//! ([`host`]) and the card's end (`card`, for the simulated card only).

#[cfg(any(test, feature = "card"))]
pub mod card;
pub mod diversify;
pub mod host;
pub mod scp;

/// A command APDU split into its parts (short form).
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte.
    pub cla: u8,
    /// Instruction.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Command data (may be card data: never shown by `Debug`).
    pub data: Vec<u8>,
    /// Expected response length, if any (`Some(0)` = 256).
    pub le: Option<u8>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Command({:02X} {:02X} {:02X} {:02X}, {} bytes, le {:?})",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

impl Command {
    /// A command with data and no Le.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: impl Into<Vec<u8>>) -> Self {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: data.into(),
            le: None,
        }
    }

    /// The same command expecting a response (Le = 00).
    pub fn expect_response(mut self) -> Self {
        self.le = Some(0);
        self
    }

    /// Parses a short APDU (cases 1–4). `None` when the bytes are not a consistent APDU.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 4 {
            return None;
        }
        let (cla, ins, p1, p2) = (b[0], b[1], b[2], b[3]);
        let (data, le) = match b.len() {
            4 => (vec![], None),
            5 => (vec![], Some(b[4])),
            n => {
                let lc = b[4] as usize;
                if lc == 0 {
                    return None;
                }
                if n == 5 + lc {
                    (b[5..].to_vec(), None)
                } else if n == 6 + lc {
                    (b[5..5 + lc].to_vec(), Some(b[n - 1]))
                } else {
                    return None;
                }
            }
        };
        Some(Command {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
    }

    /// Encodes as a short APDU.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.cla, self.ins, self.p1, self.p2];
        if !self.data.is_empty() {
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(le);
        }
        out
    }

    /// CLA INS P1 P2 as hex, for logs and error messages (never the data).
    pub fn header_hex(&self) -> String {
        format!(
            "{:02X} {:02X} {:02X} {:02X}",
            self.cla, self.ins, self.p1, self.p2
        )
    }
}

/// SELECT by AID (first or only occurrence).
pub fn select(aid: &[u8]) -> Command {
    Command::new(0x00, 0xA4, 0x04, 0x00, aid).expect_response()
}

/// INSTALL [for personalization] of an application instance, sent to the ISD.
pub fn install_for_personalization(aid: &[u8]) -> Command {
    let mut data = vec![0x00, 0x00, aid.len() as u8];
    data.extend_from_slice(aid);
    data.extend_from_slice(&[0x00, 0x00, 0x00]);
    Command::new(0x80, 0xE6, 0x20, 0x00, data)
}

/// INITIALIZE UPDATE with the host challenge and key version.
pub fn initialize_update(kvn: u8, host_challenge: &[u8; 8]) -> Command {
    Command::new(0x80, 0x50, kvn, 0x00, host_challenge.to_vec()).expect_response()
}

/// The status word at the end of a response.
pub fn status_word(response: &[u8]) -> u16 {
    match response {
        [.., a, b] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// What a status word means, in words an engineer can act on.
pub fn sw_meaning(sw: u16) -> &'static str {
    match sw {
        0x9000 => "success",
        0x6283 => "selected application is blocked",
        0x6300 => "authentication failed (cryptogram mismatch)",
        0x6581 => "memory failure",
        0x6700 => "wrong length",
        0x6882 => "secure messaging not supported",
        0x6982 => "security status not satisfied",
        0x6983 => "authentication method blocked",
        0x6985 => "conditions of use not satisfied",
        0x6A80 => "incorrect values in command data",
        0x6A81 => "function not supported",
        0x6A82 => "application or file not found",
        0x6A84 => "not enough memory",
        0x6A86 => "incorrect P1 P2",
        0x6A88 => "referenced data not found",
        0x6D00 => "instruction not supported",
        0x6E00 => "class not supported",
        0x6F00 => "card internal error",
        _ => "unexpected status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode_round_trip_for_all_four_cases() {
        for hex in [
            "80CA9F17",
            "80CA9F1700",
            "80E2800003010203",
            "00A4040002A00000",
        ] {
            let b = hex::decode(hex).unwrap();
            assert_eq!(Command::parse(&b).unwrap().to_bytes(), b, "{hex}");
        }
    }

    #[test]
    fn inconsistent_lc_is_not_an_apdu() {
        assert!(Command::parse(&hex::decode("80E2800005010203").unwrap()).is_none());
    }

    #[test]
    fn debug_shows_no_data() {
        let c = Command::new(0x80, 0xE2, 0x80, 0x00, vec![0x47; 16]);
        assert_eq!(format!("{c:?}"), "Command(80 E2 80 00, 16 bytes, le None)");
    }
}
