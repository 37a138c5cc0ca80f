//! PC/SC status codes translated into what the branch staff and the journal need to know.

use station_hal::TransportError;

/// Maps a PC/SC failure on `reader` to the transport error staff can act on.
///
/// The service-loss codes all become [`TransportError::ServiceDown`] because after a
/// pcscd restart the old context answers with any of them, and the cure is the same:
/// establish a new context.
pub fn map_error(error: pcsc::Error, reader: &str) -> TransportError {
    use pcsc::Error as E;
    match error {
        E::NoReadersAvailable | E::UnknownReader | E::ReaderUnavailable => {
            TransportError::NoReader(reader.to_string())
        }
        E::NoSmartcard => TransportError::NoCard(reader.to_string()),
        E::RemovedCard | E::ResetCard => TransportError::CardRemoved,
        E::UnresponsiveCard | E::UnpoweredCard | E::InvalidAtr => TransportError::CardMute,
        E::NoService | E::ServiceStopped | E::InvalidHandle | E::Shutdown => {
            TransportError::ServiceDown(format!("pcscd does not answer ({error})"))
        }
        E::Timeout => TransportError::Timeout(format!("reader '{reader}'")),
        E::Cancelled | E::SystemCancelled => {
            TransportError::Timeout(format!("reader '{reader}' (wait cancelled)"))
        }
        E::SharingViolation => TransportError::Other(format!(
            "reader '{reader}' is in use by another program; close it and retry"
        )),
        E::ProtoMismatch => TransportError::Other(format!(
            "the card in '{reader}' does not speak the configured protocol (T=0/T=1)"
        )),
        other => TransportError::Other(format!("{other} (reader '{reader}')")),
    }
}

/// Whether an error means the PC/SC context is dead and a new one must be established.
pub fn is_service_loss(error: &TransportError) -> bool {
    matches!(error, TransportError::ServiceDown(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcsc::Error as E;

    const R: &str = "Virtual PCD 00 00";

    #[test]
    fn no_readers_means_no_reader() {
        assert_eq!(
            map_error(E::NoReadersAvailable, R),
            TransportError::NoReader(R.into())
        );
        assert_eq!(
            map_error(E::UnknownReader, R),
            TransportError::NoReader(R.into())
        );
    }

    #[test]
    fn no_smartcard_means_no_card_in_that_reader() {
        assert_eq!(
            map_error(E::NoSmartcard, R),
            TransportError::NoCard(R.into())
        );
    }

    #[test]
    fn removed_or_reset_card_means_card_removed() {
        assert_eq!(map_error(E::RemovedCard, R), TransportError::CardRemoved);
        assert_eq!(map_error(E::ResetCard, R), TransportError::CardRemoved);
    }

    #[test]
    fn unresponsive_card_means_mute_card() {
        assert_eq!(map_error(E::UnresponsiveCard, R), TransportError::CardMute);
    }

    #[test]
    fn service_loss_codes_mean_service_down() {
        for e in [
            E::NoService,
            E::ServiceStopped,
            E::InvalidHandle,
            E::Shutdown,
        ] {
            let mapped = map_error(e, R);
            assert!(
                is_service_loss(&mapped),
                "{e:?} should be a service loss, got {mapped:?}"
            );
        }
    }

    #[test]
    fn card_errors_are_not_service_loss() {
        assert!(!is_service_loss(&map_error(E::RemovedCard, R)));
        assert!(!is_service_loss(&map_error(E::NoSmartcard, R)));
    }

    #[test]
    fn sharing_violation_names_the_reader_and_the_cause() {
        match map_error(E::SharingViolation, R) {
            TransportError::Other(m) => {
                assert!(m.contains(R) && m.contains("another program"), "{m}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_codes_keep_the_pcsc_words() {
        match map_error(E::NoMemory, R) {
            TransportError::Other(m) => assert!(m.contains(R), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
