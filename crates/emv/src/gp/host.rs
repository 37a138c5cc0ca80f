//! The station's end of a GlobalPlatform secure channel: INITIALIZE UPDATE, EXTERNAL
//! AUTHENTICATE, then every command wrapped.

use station_hal::ApduTransport;

use super::scp::{
    host_session, max_plain_data, InitUpdateResponse, KeySource, ScError, ScpParams, SecurityLevel,
    Wrapper,
};
use crate::crypto::pad80;
use crate::gp::{self, Command};

/// An open secure channel, host side.
pub struct HostChannel {
    wrapper: Wrapper,
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
        let (session, cg) = host_session(params.protocol, keys, &host_challenge, &iu)?;
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
        Ok((HostChannel { wrapper }, 2))
    }

    /// Wraps one command for this session.
    pub fn wrap(&mut self, cmd: &Command) -> Result<Vec<u8>, ScError> {
        Ok(self.wrapper.wrap(cmd)?.to_bytes())
    }

    /// Encrypts the data of a sensitive DGI under the DEK, padding first when asked.
    pub fn encrypt_dgi(&self, data: &[u8], pad: bool) -> Result<Vec<u8>, ScError> {
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
