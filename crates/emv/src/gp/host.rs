//! The station's end of a GlobalPlatform secure channel: INITIALIZE UPDATE, EXTERNAL
//! AUTHENTICATE, then every command wrapped.

use station_hal::ApduTransport;

use std::sync::Arc;

use zeroize::Zeroizing;

use super::scp::{
    host_session, max_plain_data, HsmCardKeys, InitUpdateResponse, KeySource, ScError, ScpParams,
    SecurityLevel, SensitiveData, Wrapper,
};
use crate::crypto::pad80;
use crate::gp::{self, Command};

/// An open secure channel, host side.
pub struct HostChannel {
    wrapper: Wrapper,
    /// When the card keys are in an HSM, the DEK is too: what it needs to find it.
    hsm_dek: Option<HsmDek>,
}

/// The session DEK inside an HSM: the card it belongs to and the session's counter.
struct HsmDek {
    keys: Arc<dyn HsmCardKeys>,
    kdd: [u8; 10],
    sequence: Vec<u8>,
}

impl std::fmt::Debug for HostChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HostChannel({:?}, {:?})",
            self.wrapper.protocol, self.wrapper.level
        )
    }
}

fn check_sw(command: &'static str, r: &[u8]) -> Result<(), ScError> {
    let sw = gp::status_word(r);
    if sw == 0x9000 {
        Ok(())
    } else {
        Err(ScError::Refused {
            command,
            sw,
            meaning: gp::sw_meaning(sw),
        })
    }
}

impl HostChannel {
    /// Opens a session on the currently selected application: INITIALIZE UPDATE,
    /// card cryptogram check, EXTERNAL AUTHENTICATE.
    pub async fn open(
        transport: &mut dyn ApduTransport,
        keys: &KeySource,
        params: ScpParams,
        host_challenge: [u8; 8],
    ) -> Result<(HostChannel, u32), ScError> {
        let r = transport
            .exchange(&gp::initialize_update(params.kvn, &host_challenge).to_bytes())
            .await?;
        check_sw("INITIALIZE UPDATE", &r)?;
        let iu = InitUpdateResponse::parse(&r[..r.len() - 2])?;
        if iu.scp != params.protocol.id() {
            return Err(ScError::ProtocolMismatch {
                card: iu.scp,
                configured: params.protocol.id(),
            });
        }
        let (session, cg) = host_session(params.protocol, keys, &host_challenge, &iu).await?;
        if cg.card != iu.card_cryptogram {
            return Err(ScError::CardCryptogram);
        }
        let mut wrapper = Wrapper::new(params.protocol, session, SecurityLevel::CMAC);
        let ea = Command::new(0x80, 0x82, params.level.0, 0x00, cg.host.to_vec());
        let wrapped = wrapper.wrap(&ea)?;
        let r = transport.exchange(&wrapped.to_bytes()).await?;
        check_sw("EXTERNAL AUTHENTICATE", &r)?;
        wrapper.level = params.level;
        // The SCP03 encryption counter starts at 1 with the first command after EA.
        wrapper.counter = 0;
        let hsm_dek = match keys {
            KeySource::Hsm(k) => Some(HsmDek {
                keys: k.clone(),
                kdd: iu.kdd,
                sequence: iu.sequence.clone(),
            }),
            _ => None,
        };
        Ok((HostChannel { wrapper, hsm_dek }, 2))
    }

    /// Wraps one command for this session.
    pub fn wrap(&mut self, cmd: &Command) -> Result<Vec<u8>, ScError> {
        Ok(self.wrapper.wrap(cmd)?.to_bytes())
    }

    /// Encrypts the data of sensitive DGIs under the session DEK, one result per item:
    /// on the host with a DEK from static keys or a KMC, inside the HSM (off this
    /// thread) when the card keys are there. Clear items are padded as asked first.
    pub async fn encrypt_dgis(
        &self,
        items: Vec<(SensitiveData, bool)>,
    ) -> Result<Vec<Vec<u8>>, ScError> {
        let block = self.wrapper.dgi_block();
        let items: Vec<SensitiveData> = items
            .into_iter()
            .map(|(item, pad)| match item {
                SensitiveData::Clear(d) if pad => {
                    SensitiveData::Clear(Zeroizing::new(pad80(&d, block)))
                }
                other => other,
            })
            .collect();
        match &self.hsm_dek {
            Some(h) => Ok(h
                .keys
                .encrypt_sensitive(self.wrapper.protocol, &h.kdd, &h.sequence, items)
                .await?),
            None => items
                .iter()
                .map(|item| match item {
                    SensitiveData::Clear(d) => Ok(self.wrapper.encrypt_dgi(d)?),
                    SensitiveData::IccKeys { .. } => Err(ScError::Crypto(
                        crate::crypto::CryptoError::Hsm(
                            "ICC keys held in an HSM need a secure channel opened with that HSM's transport keys"
                                .into(),
                        ),
                    )),
                })
                .collect(),
        }
    }

    /// Encrypts the data of a sensitive DGI under a DEK held on the host, padding first
    /// when asked; a channel whose DEK is in an HSM uses [`HostChannel::encrypt_dgis`].
    pub fn encrypt_dgi(&self, data: &[u8], pad: bool) -> Result<Vec<u8>, ScError> {
        if self.hsm_dek.is_some() {
            return Err(ScError::Crypto(crate::crypto::CryptoError::Hsm(
                "the session DEK is in the HSM: encrypt through it".into(),
            )));
        }
        let block = self.wrapper.dgi_block();
        let d = if pad {
            pad80(data, block)
        } else {
            data.to_vec()
        };
        Ok(self.wrapper.encrypt_dgi(&d)?)
    }

    /// Cipher block size of DGI encryption (8 for SCP02, 16 for SCP03).
    pub fn dgi_block(&self) -> usize {
        self.wrapper.dgi_block()
    }

    /// Most clear bytes one wrapped command can carry.
    pub fn max_plain_data(&self) -> usize {
        max_plain_data(self.wrapper.protocol, self.wrapper.level)
    }
}
