//! EMV CPS personalization: select the application, open the secure channel, and
//! send the DGIs in as few STORE DATA commands as the data allows.
//!
//! Sensitive DGIs are encrypted under the DEK (per [`DgiEncryption`]); a STORE DATA
//! carries either clear or encrypted DGIs, never both, with P1 bits `60` set for the
//! encrypted ones; consecutive DGIs of the same kind are packed into one command and
//! a DGI longer than a command continues in the next; P2 numbers the blocks and P1
//! bit `80` marks the last one, after which the application is personalized.

use std::time::{Duration, Instant};

use station_hal::{ApduTransport, TransportError};
use thiserror::Error;

use crate::dgi::{Dgi, DgiEncryption, DgiError};
use crate::gp::host::HostChannel;
use crate::gp::scp::{KeySource, ScError, ScpParams, SensitiveData};
use crate::gp::{self, Command};
use zeroize::Zeroizing;

/// Why personalization stopped, naming the command that failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CpsError {
    /// The card left the encoder while a command was under way: the card is spoiled.
    #[error("card removed during encoding ({command})")]
    CardRemoved {
        /// The command under way.
        command: String,
    },
    /// The chip link failed otherwise.
    #[error("{command}: {source}")]
    Transport {
        /// The command under way.
        command: String,
        /// The transport's error.
        source: TransportError,
    },
    /// The card answered a status word other than 9000.
    #[error("{command} refused by the card: SW {sw:04X} ({meaning})")]
    Refused {
        /// The command, e.g. `STORE DATA block 3 (DGI 0101)`.
        command: String,
        /// Status word.
        sw: u16,
        /// Its meaning.
        meaning: &'static str,
    },
    /// Opening the secure channel failed.
    #[error("secure channel: {0}")]
    SecureChannel(ScError),
    /// A DGI cannot be encoded as given.
    #[error("DGI {dgi:04X}: {reason}")]
    BadDgi {
        /// The DGI.
        dgi: u16,
        /// What is wrong.
        reason: String,
    },
}

impl CpsError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            CpsError::CardRemoved { .. } => "CPS_CARD_REMOVED",
            CpsError::Transport { .. } => "CPS_TRANSPORT",
            CpsError::Refused { .. } => "CPS_REFUSED",
            CpsError::SecureChannel(ScError::CardCryptogram) => "CPS_TRANSPORT_KEY_MISMATCH",
            CpsError::SecureChannel(_) => "CPS_SECURE_CHANNEL",
            CpsError::BadDgi { .. } => "CPS_BAD_DGI",
        }
    }
}

impl From<DgiError> for CpsError {
    fn from(e: DgiError) -> Self {
        let dgi = match &e {
            DgiError::TruncatedData { dgi, .. } => *dgi,
            DgiError::TooLong(d) | DgiError::Sealed(d) => *d,
            DgiError::TruncatedHeader(_) => 0,
        };
        CpsError::BadDgi {
            dgi,
            reason: e.to_string(),
        }
    }
}

/// A DGI as it goes on the wire: header ‖ (possibly encrypted) data.
#[derive(Clone, PartialEq, Eq)]
pub struct WireDgi {
    /// The DGI.
    pub id: u16,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
    /// Whether its data is encrypted under the DEK.
    pub encrypted: bool,
}

impl std::fmt::Debug for WireDgi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireDgi({:04X}, {} bytes)", self.id, self.bytes.len())
    }
}

/// One planned STORE DATA (before secure messaging).
#[derive(Clone, PartialEq, Eq)]
pub struct StoreDataCommand {
    /// P1: `80` last block, `60` encrypted DGIs.
    pub p1: u8,
    /// Block number.
    pub p2: u8,
    /// Clear command data (DGI bytes, sensitive ones already DEK-encrypted).
    pub data: Vec<u8>,
    /// DGIs this command carries (all or part of), for error messages.
    pub dgis: Vec<u16>,
}

impl std::fmt::Debug for StoreDataCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StoreData(p1 {:02X}, block {}, {} bytes, dgis {:04X?})",
            self.p1,
            self.p2,
            self.data.len(),
            self.dgis
        )
    }
}

impl StoreDataCommand {
    /// How the command is named in errors.
    pub fn name(&self) -> String {
        let dgis: Vec<String> = self.dgis.iter().map(|d| format!("{d:04X}")).collect();
        format!("STORE DATA block {} (DGI {})", self.p2, dgis.join(", "))
    }
}

/// Packs DGIs into the fewest STORE DATA commands the order and `max_data` allow.
pub fn plan_store_data(dgis: &[WireDgi], max_data: usize) -> Vec<StoreDataCommand> {
    let mut out: Vec<StoreDataCommand> = Vec::new();
    let mut i = 0;
    while i < dgis.len() {
        // A run of consecutive DGIs with the same protection shares commands.
        let enc = dgis[i].encrypted;
        let mut stream: Vec<(u16, u8)> = Vec::new();
        while i < dgis.len() && dgis[i].encrypted == enc {
            stream.extend(dgis[i].bytes.iter().map(|&b| (dgis[i].id, b)));
            i += 1;
        }
        for chunk in stream.chunks(max_data.max(1)) {
            let mut ids: Vec<u16> = chunk.iter().map(|(d, _)| *d).collect();
            ids.dedup();
            out.push(StoreDataCommand {
                p1: if enc { 0x60 } else { 0x00 },
                p2: out.len() as u8,
                data: chunk.iter().map(|(_, b)| *b).collect(),
                dgis: ids,
            });
        }
    }
    if let Some(last) = out.last_mut() {
        last.p1 |= 0x80;
    }
    out
}

/// STORE DATA count if every DGI went in commands of its own (the naive baseline).
pub fn one_dgi_per_command_count(dgis: &[WireDgi], max_data: usize) -> usize {
    dgis.iter().map(|d| d.bytes.len().div_ceil(max_data)).sum()
}

/// What to personalize and how to reach it.
#[derive(Debug, Clone)]
pub struct PersoTarget {
    /// AID of the application instance.
    pub aid: Vec<u8>,
    /// When set, select this ISD and send INSTALL [for personalization] for `aid`.
    pub via_isd: Option<Vec<u8>>,
}

/// What a personalization session did.
#[derive(Debug, Clone, PartialEq)]
pub struct PersoReport {
    /// APDUs sent (GET RESPONSE and resends included only as the transport counts them).
    pub apdu_count: u32,
    /// STORE DATA commands sent.
    pub store_data_count: u32,
    /// DGIs written.
    pub dgi_count: usize,
    /// Wall time of the session.
    pub duration: Duration,
}

fn transport_error(command: &str, e: TransportError) -> CpsError {
    match e {
        TransportError::CardRemoved | TransportError::ShortResponse(_) => CpsError::CardRemoved {
            command: command.to_string(),
        },
        source => CpsError::Transport {
            command: command.to_string(),
            source,
        },
    }
}

async fn send(
    t: &mut dyn ApduTransport,
    name: &str,
    apdu: &[u8],
    count: &mut u32,
) -> Result<Vec<u8>, CpsError> {
    *count += 1;
    let r = t
        .exchange(apdu)
        .await
        .map_err(|e| transport_error(name, e))?;
    let sw = gp::status_word(&r);
    if sw != 0x9000 {
        return Err(CpsError::Refused {
            command: name.to_string(),
            sw,
            meaning: gp::sw_meaning(sw),
        });
    }
    Ok(r)
}

/// Encodes the DGIs for the wire, encrypting the sensitive ones for this session (in
/// one request to the HSM when the DEK is there).
pub async fn encode_dgis(ch: &HostChannel, dgis: &[Dgi]) -> Result<Vec<WireDgi>, CpsError> {
    let mut sensitive = Vec::new();
    for d in dgis {
        let pad = match d.encryption {
            DgiEncryption::None => {
                if d.sealed.is_some() {
                    return Err(CpsError::BadDgi {
                        dgi: d.id,
                        reason:
                            "ICC keys must be encrypted (the profile says encryption = \"none\")"
                                .into(),
                    });
                }
                continue;
            }
            DgiEncryption::Pad => true,
            DgiEncryption::Nopad => {
                if d.len() % ch.dgi_block() != 0 {
                    return Err(CpsError::BadDgi {
                        dgi: d.id,
                        reason: format!(
                            "{} bytes is not a multiple of the {}-byte cipher block and the profile says no padding",
                            d.len(),
                            ch.dgi_block()
                        ),
                    });
                }
                false
            }
        };
        let item = match &d.sealed {
            Some(keys) => SensitiveData::IccKeys {
                keys: keys.clone(),
                pad,
            },
            None => SensitiveData::Clear(Zeroizing::new(d.data.clone())),
        };
        sensitive.push((item, pad));
    }
    let mut encrypted = ch
        .encrypt_dgis(sensitive)
        .await
        .map_err(CpsError::SecureChannel)?
        .into_iter();
    dgis.iter()
        .map(|d| {
            let (data, encrypted) = match d.encryption {
                DgiEncryption::None => (d.data.clone(), false),
                DgiEncryption::Pad | DgiEncryption::Nopad => (
                    encrypted.next().ok_or_else(|| CpsError::BadDgi {
                        dgi: d.id,
                        reason: "the DEK returned fewer results than DGIs".into(),
                    })?,
                    true,
                ),
            };
            let mut bytes = Dgi::header(d.id, data.len())?;
            bytes.extend_from_slice(&data);
            Ok(WireDgi {
                id: d.id,
                bytes,
                encrypted,
            })
        })
        .collect()
}

/// Personalizes the application: SELECT (or ISD + INSTALL), secure channel, STORE DATA.
pub async fn personalize(
    t: &mut dyn ApduTransport,
    target: &PersoTarget,
    keys: &KeySource,
    params: ScpParams,
    dgis: &[Dgi],
    host_challenge: [u8; 8],
) -> Result<PersoReport, CpsError> {
    let started = Instant::now();
    let mut count = 0u32;
    if let Some(isd) = &target.via_isd {
        send(t, "SELECT ISD", &gp::select(isd).to_bytes(), &mut count).await?;
    } else {
        send(
            t,
            "SELECT application",
            &gp::select(&target.aid).to_bytes(),
            &mut count,
        )
        .await?;
    }
    let (mut ch, n) = HostChannel::open(t, keys, params, host_challenge)
        .await
        .map_err(|e| match e {
            ScError::Transport(te) => transport_error("INITIALIZE UPDATE", te),
            other => CpsError::SecureChannel(other),
        })?;
    count += n;
    if target.via_isd.is_some() {
        let install = gp::install_for_personalization(&target.aid);
        let wrapped = ch.wrap(&install).map_err(CpsError::SecureChannel)?;
        send(t, "INSTALL [for personalization]", &wrapped, &mut count).await?;
    }
    let wire = encode_dgis(&ch, dgis).await?;
    let plan = plan_store_data(&wire, ch.max_plain_data());
    for cmd in &plan {
        let apdu = ch
            .wrap(&Command::new(0x80, 0xE2, cmd.p1, cmd.p2, cmd.data.clone()))
            .map_err(CpsError::SecureChannel)?;
        send(t, &cmd.name(), &apdu, &mut count).await?;
    }
    Ok(PersoReport {
        apdu_count: count,
        store_data_count: plan.len() as u32,
        dgi_count: dgis.len(),
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(id: u16, len: usize, encrypted: bool) -> WireDgi {
        let d = Dgi::new(id, vec![0xAB; len], DgiEncryption::None);
        WireDgi {
            id,
            bytes: d.to_bytes().unwrap(),
            encrypted,
        }
    }

    #[test]
    fn small_dgis_of_one_kind_share_a_command() {
        let p = plan_store_data(&[wire(0x0101, 40, false), wire(0x0102, 60, false)], 239);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].dgis, vec![0x0101, 0x0102]);
        assert_eq!(p[0].p1, 0x80);
    }

    #[test]
    fn clear_and_encrypted_dgis_never_share_a_command() {
        let p = plan_store_data(&[wire(0x0101, 10, false), wire(0x8000, 48, true)], 239);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].p1, p[1].p1), (0x00, 0xE0));
        assert_eq!((p[0].p2, p[1].p2), (0, 1));
    }

    #[test]
    fn a_dgi_larger_than_a_command_continues_in_the_next() {
        let p = plan_store_data(&[wire(0x0201, 600, false)], 239);
        assert_eq!(p.len(), 3); // 605 bytes with the 3-byte length form + header
        assert!(p.iter().all(|c| c.dgis == vec![0x0201]));
        assert_eq!(p.iter().map(|c| c.data.len()).sum::<usize>(), 605);
        assert_eq!(p.iter().filter(|c| c.p1 & 0x80 != 0).count(), 1);
    }

    #[test]
    fn packing_needs_fewer_commands_than_one_dgi_each() {
        let set: Vec<WireDgi> = (1..=8).map(|r| wire(0x0100 + r, 50, false)).collect();
        let packed = plan_store_data(&set, 239).len();
        assert_eq!(packed, 2); // 8 × 53 bytes = 424 bytes over 239-byte commands
        assert_eq!(one_dgi_per_command_count(&set, 239), 8);
    }

    #[test]
    fn a_named_command_lists_its_block_and_dgis() {
        let p = plan_store_data(&[wire(0x0101, 4, false)], 239);
        assert_eq!(p[0].name(), "STORE DATA block 0 (DGI 0101)");
    }
}
