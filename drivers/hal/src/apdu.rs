//! APDU transport: the contact chip encoder seen as "bytes in, bytes out".

use async_trait::async_trait;
use thiserror::Error;

use crate::StaffFacing;

/// Why an APDU exchange with the chip failed below the application layer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// No reader matched the configured name pattern.
    #[error("no card reader found matching '{0}'")]
    NoReader(String),
    /// The reader is there but holds no card.
    #[error("no card in reader '{0}'")]
    NoCard(String),
    /// The card left the reader while a command was under way.
    #[error("card removed during encoding")]
    CardRemoved,
    /// The card did not answer (no ATR or no response to a command).
    #[error("card does not answer (mute card)")]
    CardMute,
    /// The smart card service (pcscd / Windows SCardSvr) is not running or went away.
    #[error("smart card service unavailable: {0}")]
    ServiceDown(String),
    /// The reader returned fewer than the two status bytes every response carries.
    #[error("response shorter than 2 bytes ({0} bytes) from the card")]
    ShortResponse(usize),
    /// The command is longer than the reader/card accepts.
    #[error("command of {0} bytes is too long for this reader")]
    CommandTooLong(usize),
    /// The wait for a card or an answer was cancelled or timed out.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// Anything else the transport reported, with its words.
    #[error("reader error: {0}")]
    Other(String),
}

impl StaffFacing for TransportError {
    fn code(&self) -> &'static str {
        match self {
            TransportError::NoReader(_) => "ENC_NO_READER",
            TransportError::NoCard(_) => "ENC_NO_CARD",
            TransportError::CardRemoved => "ENC_CARD_REMOVED",
            TransportError::CardMute => "ENC_CARD_MUTE",
            TransportError::ServiceDown(_) => "ENC_SERVICE_DOWN",
            TransportError::ShortResponse(_) => "ENC_SHORT_RESPONSE",
            TransportError::CommandTooLong(_) => "ENC_COMMAND_TOO_LONG",
            TransportError::Timeout(_) => "ENC_TIMEOUT",
            TransportError::Other(_) => "ENC_READER_ERROR",
        }
    }

    fn staff_message(&self) -> String {
        match self {
            TransportError::NoReader(_) => {
                "The chip encoder is not detected: check its USB cable and power.".into()
            }
            TransportError::NoCard(_) => "No card is at the chip encoder.".into(),
            TransportError::CardRemoved => {
                "The card was removed during encoding: the card is spoiled.".into()
            }
            TransportError::CardMute => {
                "The chip does not answer: the card is faulty or badly placed.".into()
            }
            TransportError::ServiceDown(_) => {
                "The smart card service is not running: restart the station agent or call IT."
                    .into()
            }
            other => format!("Chip encoder problem: {other}."),
        }
    }
}

/// Maximum short APDU response data length (Le = 00 means 256).
const SHORT_LE_MAX: usize = 256;

/// A link to a contact chip: send one command APDU, get the response with SW1 SW2 last.
///
/// Implementations only move bytes (`transmit`); the T=0 procedure bytes that PC/SC
/// leaves to the application are handled once, here, by [`ApduTransport::exchange`].
#[async_trait]
pub trait ApduTransport: Send {
    /// Sends one command APDU as is and returns the raw response (data ‖ SW1 SW2).
    async fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;

    /// Whether the reader accepts extended-length APDUs.
    fn supports_extended_length(&self) -> bool {
        false
    }

    /// Sends a command and resolves `61xx` (GET RESPONSE) and `6Cxx` (resend with Le)
    /// so the caller always sees the final data and status word.
    async fn exchange(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        if command.len() > 5 + 255 + 1 && !self.supports_extended_length() {
            return Err(TransportError::CommandTooLong(command.len()));
        }
        let mut response = checked(self.transmit(command).await?)?;
        let mut data = Vec::new();
        // A misbehaving card could chain 61xx forever; a real response never exceeds 64 KiB.
        for _ in 0..256 {
            let (sw1, sw2) = (response[response.len() - 2], response[response.len() - 1]);
            match sw1 {
                0x6C => {
                    let resent = with_le(command, sw2);
                    response = checked(self.transmit(&resent).await?)?;
                }
                0x61 => {
                    data.extend_from_slice(&response[..response.len() - 2]);
                    let get_response = [command[0] & 0x03, 0xC0, 0x00, 0x00, sw2];
                    response = checked(self.transmit(&get_response).await?)?;
                }
                _ => {
                    data.extend_from_slice(&response);
                    return Ok(data);
                }
            }
        }
        Err(TransportError::Other(
            "card kept answering 61xx/6Cxx without end".into(),
        ))
    }
}

/// A chip encoder: an APDU transport that can wait for the card the printer parked
/// at its contacts and let go of it afterwards.
#[async_trait]
pub trait ChipEncoder: ApduTransport {
    /// Waits until a card is present and connected.
    async fn wait_for_card(&mut self, timeout: std::time::Duration) -> Result<(), TransportError>;
    /// Lets go of the card (it is about to move on).
    async fn release(&mut self);
}

fn checked(response: Vec<u8>) -> Result<Vec<u8>, TransportError> {
    if response.len() < 2 {
        Err(TransportError::ShortResponse(response.len()))
    } else {
        Ok(response)
    }
}

/// Rebuilds a short command with Le replaced (or appended) as the card asked in `6Cxx`.
fn with_le(command: &[u8], le: u8) -> Vec<u8> {
    let mut out = command[..4.min(command.len())].to_vec();
    match command.len() {
        0..=4 => {}
        5 => {} // case 2: the single byte after the header is Le; replaced below
        n => {
            let lc = command[4] as usize;
            // case 3/4: header ‖ Lc ‖ data [‖ Le]
            let end = (5 + lc).min(n);
            out.extend_from_slice(&command[4..end]);
        }
    }
    out.push(le);
    debug_assert!(out.len() <= 5 + SHORT_LE_MAX);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Replays scripted responses and records the commands it was sent.
    struct Script {
        replies: VecDeque<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    #[async_trait]
    impl ApduTransport for Script {
        async fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
            self.sent.push(command.to_vec());
            Ok(self.replies.pop_front().expect("script ran out"))
        }
    }

    fn script(replies: &[&[u8]]) -> Script {
        Script {
            replies: replies.iter().map(|r| r.to_vec()).collect(),
            sent: Vec::new(),
        }
    }

    #[tokio::test]
    async fn status_61xx_fetches_the_rest_with_get_response() {
        let mut t = script(&[&[0x61, 0x03], &[1, 2, 3, 0x90, 0x00]]);
        let r = t
            .exchange(&[0x00, 0xA4, 0x04, 0x00, 0x01, 0xA0])
            .await
            .unwrap();
        assert_eq!(r, vec![1, 2, 3, 0x90, 0x00]);
        assert_eq!(t.sent[1], vec![0x00, 0xC0, 0x00, 0x00, 0x03]);
    }

    #[tokio::test]
    async fn chained_61xx_concatenates_data() {
        let mut t = script(&[&[9, 0x61, 0x02], &[7, 8, 0x90, 0x00]]);
        let r = t.exchange(&[0x80, 0xCA, 0x9F, 0x17, 0x00]).await.unwrap();
        assert_eq!(r, vec![9, 7, 8, 0x90, 0x00]);
        assert_eq!(t.sent[1], vec![0x00, 0xC0, 0x00, 0x00, 0x02]);
    }

    #[tokio::test]
    async fn status_6cxx_resends_with_the_le_the_card_asked_for() {
        let mut t = script(&[&[0x6C, 0x04], &[1, 2, 3, 4, 0x90, 0x00]]);
        let r = t.exchange(&[0x80, 0xCA, 0x9F, 0x36, 0x00]).await.unwrap();
        assert_eq!(r, vec![1, 2, 3, 4, 0x90, 0x00]);
        assert_eq!(t.sent[1], vec![0x80, 0xCA, 0x9F, 0x36, 0x04]);
    }

    #[tokio::test]
    async fn case4_6cxx_keeps_the_data_and_replaces_le() {
        let mut t = script(&[&[0x6C, 0x02], &[5, 6, 0x90, 0x00]]);
        t.exchange(&[0x80, 0xA8, 0x00, 0x00, 0x02, 0x83, 0x00, 0x00])
            .await
            .unwrap();
        assert_eq!(
            t.sent[1],
            vec![0x80, 0xA8, 0x00, 0x00, 0x02, 0x83, 0x00, 0x02]
        );
    }

    #[tokio::test]
    async fn response_shorter_than_two_bytes_is_a_transport_error() {
        let mut t = script(&[&[0x90]]);
        let e = t
            .exchange(&[0x00, 0xB2, 0x01, 0x0C, 0x00])
            .await
            .unwrap_err();
        assert_eq!(e, TransportError::ShortResponse(1));
        assert_eq!(e.code(), "ENC_SHORT_RESPONSE");
    }

    #[tokio::test]
    async fn empty_response_is_a_transport_error() {
        let mut t = script(&[&[]]);
        let e = t
            .exchange(&[0x00, 0xB2, 0x01, 0x0C, 0x00])
            .await
            .unwrap_err();
        assert_eq!(e, TransportError::ShortResponse(0));
    }
}
