//! The card's end of a GlobalPlatform secure channel: checks the host cryptogram and
//! MACs and decrypts. Only the simulated card needs it, so it is built only with the
//! `card` feature and stays out of the station's binary.

use super::scp::{
    derive_session, Cryptograms, InitUpdateResponse, Protocol, ScError, SecurityLevel, SessionKeys,
    StaticKeys, Wrapper,
};
use crate::gp::Command;

/// The card's end of a secure channel (used by the simulated card).
pub struct CardChannel {
    protocol: Protocol,
    pending: Option<(SessionKeys, Cryptograms)>,
    wrapper: Option<Wrapper>,
}

impl CardChannel {
    /// Answers INITIALIZE UPDATE: derives the session and returns the response data.
    pub fn initialize_update(
        protocol: Protocol,
        keys: StaticKeys,
        kdd: [u8; 10],
        kvn: u8,
        sequence: Vec<u8>,
        card_challenge: Vec<u8>,
        host_challenge: [u8; 8],
    ) -> Result<(CardChannel, Vec<u8>), ScError> {
        let mut iu = InitUpdateResponse {
            kdd,
            kvn,
            scp: protocol.id(),
            sequence,
            card_challenge,
            card_cryptogram: [0; 8],
        };
        let (s, c) = derive_session(protocol, &keys, &host_challenge, &iu)?;
        iu.card_cryptogram = c.card;
        let i = match protocol {
            Protocol::Scp02 { i } | Protocol::Scp03 { i } => i,
        };
        let bytes = iu.to_bytes(i);
        Ok((
            CardChannel {
                protocol,
                pending: Some((s, c)),
                wrapper: None,
            },
            bytes,
        ))
    }

    /// Checks EXTERNAL AUTHENTICATE (host cryptogram and C-MAC); opens the session.
    pub fn external_authenticate(&mut self, cmd: &Command) -> Result<(), ScError> {
        let (s, c) = self.pending.take().ok_or(ScError::HostAuth(
            "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE",
        ))?;
        let mut w = Wrapper::new(self.protocol, s, SecurityLevel::CMAC);
        let plain = w.unwrap(cmd)?;
        if plain.data.len() != 8 || plain.data[..] != c.host[..] {
            return Err(ScError::HostAuth("host cryptogram does not verify"));
        }
        w.level = SecurityLevel(cmd.p1);
        w.counter = 0;
        self.wrapper = Some(w);
        Ok(())
    }

    /// Whether EXTERNAL AUTHENTICATE succeeded.
    pub fn is_open(&self) -> bool {
        self.wrapper.is_some()
    }

    /// Checks and removes the protection of a command in the open session.
    pub fn unwrap(&mut self, cmd: &Command) -> Result<Command, ScError> {
        self.wrapper
            .as_mut()
            .ok_or(ScError::HostAuth("no open secure channel"))?
            .unwrap(cmd)
    }

    /// Decrypts sensitive DGI data with the DEK (padding left in place).
    pub fn decrypt_dgi(&self, data: &[u8]) -> Result<Vec<u8>, ScError> {
        Ok(self
            .wrapper
            .as_ref()
            .ok_or(ScError::HostAuth("no open secure channel"))?
            .decrypt_dgi(data)?)
    }
}
