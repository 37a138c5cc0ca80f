//! Reading a freshly personalized card the way a payment terminal would, to prove
//! that what was stored is what a terminal sees: SELECT by AID, GET PROCESSING
//! OPTIONS, READ RECORD over the AFL, INTERNAL AUTHENTICATE when the card does DDA,
//! GET DATA (PIN try counter, ATC) and a first GENERATE AC asking for an ARQC.
//!
//! Terminal data is deterministic ([`TerminalParams::default`]) so that a read-back
//! can be replayed and checked; the GENERATE AC consumes one ATC value on the card.
//! The check of what was read against the order ([`verify`]) lives beside it.

pub mod verify;

use station_hal::{ApduTransport, StaffFacing, TransportError};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::tlv::{self, encode, parse_dol};

/// Why the read-back could not complete.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TerminalError {
    /// The reader or the link to the card failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The card refused a command.
    #[error("{command} refused by the card with status {sw:04X}")]
    Status {
        /// The command, in words.
        command: &'static str,
        /// SW1 SW2.
        sw: u16,
    },
    /// The card answered with data a terminal cannot use.
    #[error("{command}: {reason}")]
    Malformed {
        /// The command, in words.
        command: &'static str,
        /// What is wrong (never card data).
        reason: String,
    },
}

impl StaffFacing for TerminalError {
    fn code(&self) -> &'static str {
        match self {
            TerminalError::Transport(e) => e.code(),
            // A card that personalization left unreadable is a production failure.
            TerminalError::Status { .. } | TerminalError::Malformed { .. } => "CARD_PROD_EXCEPTION",
        }
    }

    fn staff_message(&self) -> String {
        match self {
            TerminalError::Transport(e) => e.staff_message(),
            other => format!("The card failed its read-back check ({other}): reject it."),
        }
    }
}

/// The terminal data sent to the card. Defaults are the terminal data of the
/// published Visa CVN 10 vector (amount 10.00 USD, 2026-11-22, UN 12345678).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalParams {
    /// 9F02 amount authorised.
    pub amount: [u8; 6],
    /// 9F03 amount other.
    pub amount_other: [u8; 6],
    /// 9F1A terminal country code.
    pub country: [u8; 2],
    /// 95 terminal verification results.
    pub tvr: [u8; 5],
    /// 5F2A transaction currency code.
    pub currency: [u8; 2],
    /// 9A transaction date YYMMDD.
    pub date: [u8; 3],
    /// 9C transaction type (00 goods and services).
    pub tx_type: u8,
    /// 9F37 unpredictable number.
    pub unpredictable_number: [u8; 4],
    /// 9F35 terminal type (22: attended, online with offline capability).
    pub terminal_type: u8,
}

impl Default for TerminalParams {
    fn default() -> Self {
        TerminalParams {
            amount: [0, 0, 0, 0, 0x10, 0x00],
            amount_other: [0; 6],
            country: [0x08, 0x40],
            tvr: [0; 5],
            currency: [0x08, 0x40],
            date: [0x26, 0x11, 0x22],
            tx_type: 0x00,
            unpredictable_number: [0x12, 0x34, 0x56, 0x78],
            terminal_type: 0x22,
        }
    }
}

/// Tags whose values are numeric (`n`): shorter values are left-padded with zeros.
const NUMERIC: &[u32] = &[0x9F02, 0x9F03, 0x9F1A, 0x5F2A, 0x9A, 0x9C];

impl TerminalParams {
    /// The terminal's value for a tag, if it has one.
    pub fn value(&self, tag: u32) -> Option<Vec<u8>> {
        Some(match tag {
            0x9F02 => self.amount.to_vec(),
            0x9F03 => self.amount_other.to_vec(),
            0x9F1A => self.country.to_vec(),
            0x95 => self.tvr.to_vec(),
            0x5F2A => self.currency.to_vec(),
            0x9A => self.date.to_vec(),
            0x9C => vec![self.tx_type],
            0x9F37 => self.unpredictable_number.to_vec(),
            0x9F35 => vec![self.terminal_type],
            _ => return None,
        })
    }

    /// DOL-related data (EMV Book 3 §5.4): each requested tag's value fitted to the
    /// requested length; tags the terminal does not know are sent as zeros.
    pub fn dol_data(&self, dol: &[(u32, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(tag, len) in dol {
            let v = self.value(tag).unwrap_or_default();
            let numeric = NUMERIC.contains(&tag);
            let fitted = if v.len() >= len {
                if numeric {
                    v[v.len() - len..].to_vec()
                } else {
                    v[..len].to_vec()
                }
            } else if numeric {
                let mut p = vec![0; len - v.len()];
                p.extend(v);
                p
            } else {
                let mut p = v;
                p.resize(len, 0);
                p
            };
            out.extend(fitted);
        }
        out
    }
}

/// One record as READ RECORD returned it (a `70` template; holds card data).
#[derive(Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Short file identifier.
    pub sfi: u8,
    /// Record number.
    pub record: u8,
    /// The template bytes.
    pub data: Zeroizing<Vec<u8>>,
}

/// The card's answer to GENERATE AC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateAcResponse {
    /// 9F27 cryptogram information data (top bits 80 = ARQC, 40 = TC, 00 = AAC).
    pub cid: u8,
    /// 9F36 application transaction counter.
    pub atc: [u8; 2],
    /// 9F26 application cryptogram; `None` when the card returned it inside a CDA
    /// signature (9F4B), where only the ICC key can recover it.
    pub ac: Option<[u8; 8]>,
    /// 9F10 issuer application data.
    pub iad: Vec<u8>,
    /// 9F4B signed dynamic application data, when the terminal asked for CDA.
    pub sdad: Option<Vec<u8>>,
    /// The response's data objects other than 9F4B, in order (what the CDA
    /// transaction data hash covers).
    pub signed_objects: Vec<u8>,
}

/// DDA: what the terminal sent and what the card signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalAuthenticate {
    /// The DDOL data sent (terminal dynamic data).
    pub ddol_data: Vec<u8>,
    /// Signed dynamic application data (9F4B).
    pub sdad: Vec<u8>,
}

/// DDOL a terminal uses when the card has none (EMV Book 3: the unpredictable number).
const DEFAULT_DDOL: &[u8] = &[0x9F, 0x37, 0x04];

/// Everything the read-back saw. Holds card data: `Debug` shows its shape only.
#[derive(Clone)]
pub struct CardReadout {
    /// The AID selected.
    pub aid: Vec<u8>,
    /// The FCI returned by SELECT.
    pub fci: Vec<u8>,
    /// 82 from GET PROCESSING OPTIONS.
    pub aip: [u8; 2],
    /// 94 from GET PROCESSING OPTIONS.
    pub afl: Vec<u8>,
    /// Every record the AFL names.
    pub records: Vec<ReadRecord>,
    /// GET DATA 9F17, when the card answers it.
    pub pin_try_counter: Option<u8>,
    /// GET DATA 9F36 before GENERATE AC, when the card answers it.
    pub atc_before: Option<[u8; 2]>,
    /// INTERNAL AUTHENTICATE, done when the AIP announces DDA.
    pub internal_authenticate: Option<InternalAuthenticate>,
    /// The PDOL data sent with GET PROCESSING OPTIONS (empty without a PDOL).
    pub pdol_data: Vec<u8>,
    /// The CDOL1 data sent with GENERATE AC.
    pub cdol1_data: Vec<u8>,
    /// The answer to GENERATE AC.
    pub generate_ac: GenerateAcResponse,
    /// Terminal data used.
    pub terminal: TerminalParams,
}

impl std::fmt::Debug for CardReadout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardReadout")
            .field("aid", &hex::encode_upper(&self.aid))
            .field("aip", &hex::encode_upper(self.aip))
            .field("afl", &hex::encode_upper(&self.afl))
            .field(
                "records",
                &self
                    .records
                    .iter()
                    .map(|r| format!("SFI {} rec {} ({} bytes)", r.sfi, r.record, r.data.len()))
                    .collect::<Vec<_>>(),
            )
            .field("pin_try_counter", &self.pin_try_counter)
            .field("generate_ac", &self.generate_ac)
            .finish_non_exhaustive()
    }
}

impl CardReadout {
    /// The first value of `tag` in the records, in AFL order.
    pub fn record_tag(&self, tag: u32) -> Option<Zeroizing<Vec<u8>>> {
        self.records
            .iter()
            .find_map(|r| tlv::find(&r.data, tag).ok().flatten().map(Zeroizing::new))
    }
}

fn status(resp: &[u8]) -> u16 {
    u16::from_be_bytes([resp[resp.len() - 2], resp[resp.len() - 1]])
}

async fn command(
    t: &mut dyn ApduTransport,
    name: &'static str,
    apdu: &[u8],
) -> Result<Zeroizing<Vec<u8>>, TerminalError> {
    let mut resp = Zeroizing::new(t.exchange(apdu).await?);
    if resp.len() < 2 {
        return Err(TransportError::ShortResponse(resp.len()).into());
    }
    let sw = status(&resp);
    if sw != 0x9000 {
        return Err(TerminalError::Status { command: name, sw });
    }
    let n = resp.len() - 2;
    resp.truncate(n);
    Ok(resp)
}

fn case4(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> Result<Vec<u8>, TerminalError> {
    let lc = u8::try_from(data.len()).map_err(|_| TerminalError::Malformed {
        command: "command",
        reason: format!("{} bytes of command data exceed a short APDU", data.len()),
    })?;
    let mut c = vec![cla, ins, p1, p2, lc];
    c.extend_from_slice(data);
    c.push(0x00);
    Ok(c)
}

fn malformed(command: &'static str, reason: impl Into<String>) -> TerminalError {
    TerminalError::Malformed {
        command,
        reason: reason.into(),
    }
}

/// Reads the card as a terminal would and asks it for an ARQC.
pub async fn read_card(
    t: &mut dyn ApduTransport,
    aid: &[u8],
    params: &TerminalParams,
) -> Result<CardReadout, TerminalError> {
    // SELECT by AID.
    const SELECT: &str = "SELECT";
    let fci = command(t, SELECT, &case4(0x00, 0xA4, 0x04, 0x00, aid)?).await?;
    let top = tlv::parse(&fci).map_err(|e| malformed(SELECT, format!("FCI is not TLV ({e})")))?;
    let fci_body = match top.as_slice() {
        [t] if t.tag == 0x6F => t.value.clone(),
        _ => return Err(malformed(SELECT, "answer is not one 6F FCI template")),
    };
    let df_name = tlv::find(&fci_body, 0x84)
        .map_err(|e| malformed(SELECT, e.to_string()))?
        .ok_or_else(|| malformed(SELECT, "FCI has no DF name (84)"))?;
    if df_name != aid {
        return Err(malformed(
            SELECT,
            format!(
                "card selected {} instead of {}",
                hex::encode_upper(&df_name),
                hex::encode_upper(aid)
            ),
        ));
    }

    // GET PROCESSING OPTIONS, with PDOL data when the card asks for it.
    const GPO: &str = "GET PROCESSING OPTIONS";
    let pdol_data =
        match tlv::find(&fci_body, 0x9F38).map_err(|e| malformed(SELECT, e.to_string()))? {
            Some(pdol) => params
                .dol_data(&parse_dol(&pdol).map_err(|e| malformed(SELECT, format!("PDOL: {e}")))?),
            None => Vec::new(),
        };
    let gpo = command(
        t,
        GPO,
        &case4(0x80, 0xA8, 0x00, 0x00, &encode(0x83, &pdol_data))?,
    )
    .await?;
    let (aip, afl) = parse_gpo(&gpo)?;

    // READ RECORD for every record the AFL names.
    const READ: &str = "READ RECORD";
    let mut records = Vec::new();
    for entry in afl.chunks(4) {
        let (sfi, first, last) = (entry[0] >> 3, entry[1], entry[2]);
        for rec in first..=last {
            let data = command(t, READ, &[0x00, 0xB2, rec, (sfi << 3) | 0x04, 0x00]).await?;
            match tlv::parse(&data)
                .map_err(|e| malformed(READ, format!("SFI {sfi} record {rec}: {e}")))?
                .as_slice()
            {
                [t] if t.tag == 0x70 => {}
                _ => {
                    return Err(malformed(
                        READ,
                        format!("SFI {sfi} record {rec} is not one 70 template"),
                    ))
                }
            }
            records.push(ReadRecord {
                sfi,
                record: rec,
                data,
            });
        }
    }

    let records_tag = |tag: u32| {
        records
            .iter()
            .find_map(|r: &ReadRecord| tlv::find(&r.data, tag).ok().flatten())
    };
    // DDA: INTERNAL AUTHENTICATE with the card's DDOL (or the default one).
    const INTAUTH: &str = "INTERNAL AUTHENTICATE";
    // A card that does CDA is authenticated in GENERATE AC instead (EMV Book 3 §10.3).
    let cda = aip[0] & 0x01 != 0;
    let internal_authenticate = if aip[0] & 0x20 != 0 && !cda {
        let ddol = records_tag(0x9F49).unwrap_or_else(|| DEFAULT_DDOL.to_vec());
        let ddol = parse_dol(&ddol).map_err(|e| malformed(INTAUTH, format!("DDOL: {e}")))?;
        let ddol_data = params.dol_data(&ddol);
        let r = command(t, INTAUTH, &case4(0x00, 0x88, 0x00, 0x00, &ddol_data)?).await?;
        let sdad = match tlv::parse(&r)
            .map_err(|e| malformed(INTAUTH, e.to_string()))?
            .as_slice()
        {
            [t] if t.tag == 0x80 => t.value.clone(),
            [t] if t.tag == 0x77 => tlv::find(&t.value, 0x9F4B)
                .map_err(|e| malformed(INTAUTH, e.to_string()))?
                .ok_or_else(|| malformed(INTAUTH, "response lacks 9F4B"))?,
            _ => {
                return Err(malformed(
                    INTAUTH,
                    "response is neither format 1 (80) nor format 2 (77)",
                ))
            }
        };
        Some(InternalAuthenticate { ddol_data, sdad })
    } else {
        None
    };

    let pin_try_counter = get_data(t, 0x9F17).await?.and_then(|v| v.first().copied());
    let atc_before = get_data(t, 0x9F36).await?.and_then(|v| v.try_into().ok());

    // GENERATE AC asking for an ARQC with CDOL1 data.
    const GENAC: &str = "GENERATE AC";
    let mut readout = CardReadout {
        aid: aid.to_vec(),
        fci: fci.to_vec(),
        aip,
        afl,
        records,
        pin_try_counter,
        atc_before,
        internal_authenticate,
        pdol_data,
        cdol1_data: Vec::new(),
        generate_ac: GenerateAcResponse {
            cid: 0,
            atc: [0; 2],
            ac: None,
            iad: Vec::new(),
            sdad: None,
            signed_objects: Vec::new(),
        },
        terminal: params.clone(),
    };
    let cdol1 = readout
        .record_tag(0x8C)
        .ok_or_else(|| malformed(GENAC, "no CDOL1 (8C) in the records"))?;
    let cdol1 = parse_dol(&cdol1).map_err(|e| malformed(GENAC, format!("CDOL1: {e}")))?;
    readout.cdol1_data = params.dol_data(&cdol1);
    let ac = command(
        t,
        GENAC,
        // P1: ARQC, with a CDA signature (bit 10) when the card does CDA.
        &case4(
            0x80,
            0xAE,
            if cda { 0x90 } else { 0x80 },
            0x00,
            &readout.cdol1_data,
        )?,
    )
    .await?;
    readout.generate_ac = parse_generate_ac(&ac)?;
    Ok(readout)
}

async fn get_data(t: &mut dyn ApduTransport, tag: u16) -> Result<Option<Vec<u8>>, TerminalError> {
    const GET_DATA: &str = "GET DATA";
    let [p1, p2] = tag.to_be_bytes();
    let resp = t.exchange(&[0x80, 0xCA, p1, p2, 0x00]).await?;
    if resp.len() < 2 {
        return Err(TransportError::ShortResponse(resp.len()).into());
    }
    match status(&resp) {
        0x9000 => {}
        // Referenced data not found / conditions not satisfied: the card does not expose it.
        0x6A88 | 0x6A81 | 0x6985 => return Ok(None),
        sw => {
            return Err(TerminalError::Status {
                command: GET_DATA,
                sw,
            })
        }
    }
    let v = tlv::find(&resp[..resp.len() - 2], tag as u32)
        .map_err(|e| malformed(GET_DATA, format!("{tag:04X}: {e}")))?
        .ok_or_else(|| malformed(GET_DATA, format!("answer does not hold {tag:04X}")))?;
    Ok(Some(v))
}

fn parse_gpo(resp: &[u8]) -> Result<([u8; 2], Vec<u8>), TerminalError> {
    const GPO: &str = "GET PROCESSING OPTIONS";
    let top = tlv::parse(resp).map_err(|e| malformed(GPO, e.to_string()))?;
    let (aip, afl) = match top.as_slice() {
        // Format 1: AIP ‖ AFL.
        [t] if t.tag == 0x80 && t.value.len() >= 2 => {
            (t.value[..2].to_vec(), t.value[2..].to_vec())
        }
        // Format 2: constructed with 82 and 94.
        [t] if t.tag == 0x77 => {
            let aip = tlv::find(&t.value, 0x82).map_err(|e| malformed(GPO, e.to_string()))?;
            let afl = tlv::find(&t.value, 0x94).map_err(|e| malformed(GPO, e.to_string()))?;
            match (aip, afl) {
                (Some(a), Some(f)) => (a, f),
                _ => return Err(malformed(GPO, "response lacks AIP (82) or AFL (94)")),
            }
        }
        _ => {
            return Err(malformed(
                GPO,
                "response is neither format 1 (80) nor format 2 (77)",
            ))
        }
    };
    let aip: [u8; 2] = aip
        .try_into()
        .map_err(|_| malformed(GPO, "AIP is not 2 bytes"))?;
    if afl.is_empty() || afl.len() % 4 != 0 {
        return Err(malformed(
            GPO,
            format!(
                "AFL of {} bytes is not a whole number of 4-byte entries",
                afl.len()
            ),
        ));
    }
    for e in afl.chunks(4) {
        let sfi = e[0] >> 3;
        if !(1..=30).contains(&sfi)
            || e[0] & 0x07 != 0
            || e[1] == 0
            || e[2] < e[1]
            || e[3] > e[2] - e[1] + 1
        {
            return Err(malformed(
                GPO,
                format!("AFL entry {} is invalid", hex::encode_upper(e)),
            ));
        }
    }
    Ok((aip, afl))
}

fn parse_generate_ac(resp: &[u8]) -> Result<GenerateAcResponse, TerminalError> {
    const GENAC: &str = "GENERATE AC";
    let top = tlv::parse(resp).map_err(|e| malformed(GENAC, e.to_string()))?;
    let atc_of = |v: Vec<u8>| -> Result<[u8; 2], TerminalError> {
        v.try_into()
            .map_err(|_| malformed(GENAC, "ATC is not 2 bytes"))
    };
    let ac_of = |v: Vec<u8>| -> Result<[u8; 8], TerminalError> {
        v.try_into()
            .map_err(|_| malformed(GENAC, "cryptogram is not 8 bytes"))
    };
    match top.as_slice() {
        // Format 1: CID ‖ ATC ‖ AC ‖ IAD.
        [t] if t.tag == 0x80 && t.value.len() >= 11 => Ok(GenerateAcResponse {
            cid: t.value[0],
            atc: atc_of(t.value[1..3].to_vec())?,
            ac: Some(ac_of(t.value[3..11].to_vec())?),
            iad: t.value[11..].to_vec(),
            sdad: None,
            signed_objects: Vec::new(),
        }),
        [t] if t.tag == 0x77 => {
            let objects = tlv::parse(&t.value).map_err(|e| malformed(GENAC, e.to_string()))?;
            let get = |tag: u32| {
                objects
                    .iter()
                    .find(|o| o.tag == tag)
                    .map(|o| o.value.clone())
            };
            let need = |tag: u32| {
                get(tag).ok_or_else(|| malformed(GENAC, format!("response lacks {tag:X}")))
            };
            let cid = need(0x9F27)?;
            if cid.len() != 1 {
                return Err(malformed(GENAC, "9F27 is not 1 byte"));
            }
            let sdad = get(0x9F4B);
            let ac = match &sdad {
                Some(_) => None,
                None => Some(ac_of(need(0x9F26)?)?),
            };
            Ok(GenerateAcResponse {
                cid: cid[0],
                atc: atc_of(need(0x9F36)?)?,
                ac,
                iad: get(0x9F10).unwrap_or_default(),
                sdad,
                signed_objects: objects
                    .iter()
                    .filter(|o| o.tag != 0x9F4B)
                    .flat_map(|o| encode(o.tag, &o.value))
                    .collect(),
            })
        }
        _ => Err(malformed(
            GENAC,
            "response is neither format 1 (80) nor format 2 (77)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dol_data_pads_numbers_left_and_unknown_tags_with_zeros() {
        let p = TerminalParams::default();
        // Amount asked on 4 bytes keeps its rightmost digits; 9F4C unknown → zeros.
        let d = p.dol_data(&[(0x9F02, 4), (0x9F4C, 3), (0x9F35, 1), (0x9F1A, 3)]);
        assert_eq!(hex::encode_upper(d), "0000100000000022000840");
    }

    #[test]
    fn gpo_format_1_and_format_2_give_the_same_aip_and_afl() {
        let f1 = hex::decode("800A18000801010010010200").unwrap();
        let f2 = hex::decode("770E8202180094080801010010010200").unwrap();
        assert_eq!(parse_gpo(&f1).unwrap(), parse_gpo(&f2).unwrap());
    }

    #[test]
    fn afl_with_last_before_first_is_malformed() {
        let bad = hex::decode("8006180008020100").unwrap();
        assert!(matches!(
            parse_gpo(&bad),
            Err(TerminalError::Malformed { .. })
        ));
    }

    #[test]
    fn generate_ac_format_1_splits_cid_atc_ac_iad() {
        let r = hex::decode(["8012", "80", "0001", "283462ACC9C2B3FE", "06010A03A00000"].concat())
            .unwrap();
        let g = parse_generate_ac(&r).unwrap();
        assert_eq!(g.cid, 0x80);
        assert_eq!(g.atc, [0, 1]);
        assert_eq!(hex::encode_upper(g.ac.unwrap()), "283462ACC9C2B3FE");
        assert_eq!(hex::encode_upper(&g.iad), "06010A03A00000");
    }
}
