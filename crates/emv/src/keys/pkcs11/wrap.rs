//! ICC master keys wrapped under the card's DEK inside the token, by the ways the token has.

use super::*;

/// How this token wraps a DES key under a DES key, most standard first; learnt once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum DesWrap {
    /// `C_WrapKey` with `CKM_DES3_ECB`: the 16-byte key ECB-encrypted, as CPS wants.
    Ecb = 1,
    /// Each half derived as its own `CKK_DES` key and wrapped with `CKM_DES3_CBC` and a
    /// zero ICV: one block under CBC is ECB, so the two halves give the same bytes.
    CbcHalves = 2,
    /// No DES key wrapping (SoftHSM2 2.6): the key is read out once into zeroizing
    /// memory and encrypted as data under the DEK inside. Development stations only.
    ReadOut = 3,
}

impl DesWrap {
    fn from_u8(v: u8) -> DesWrap {
        match v {
            2 => DesWrap::CbcHalves,
            3 => DesWrap::ReadOut,
            _ => DesWrap::Ecb,
        }
    }
}

/// Whether the token lacks a mechanism (try the next way) rather than failing.
pub(super) fn unsupported(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(
            RvError::MechanismInvalid
                | RvError::MechanismParamInvalid
                | RvError::FunctionNotSupported
                | RvError::KeyTypeInconsistent
                | RvError::WrappingKeyTypeInconsistent
                | RvError::WrappingKeySizeRange
                | RvError::KeyNotWrappable
                | RvError::KeyUnextractable
                | RvError::KeyFunctionNotPermitted
                | RvError::TemplateInconsistent
                | RvError::AttributeValueInvalid,
            _
        )
    )
}

/// The three IMKs of `keys`, in DGI 8000 order (AC, SMI, SMC).
pub(super) fn imks(o: &Ops, keys: &SealedIccKeys) -> Result<[ObjectHandle; 3], KeyStoreError> {
    let index = KeyIndex(keys.imk_index);
    let k = |part| o.key("imk", index.to_string(), &labels::imk(index, part));
    Ok([k("ac")?, k("smi")?, k("smc")?])
}

/// An ICC master key (or, as `CKK_DES`, one half of it) derived inside from its IMK
/// over `data`, to be wrapped: it may leave the token only wrapped, and do nothing else.
pub(super) fn icc_key_to_wrap<'a>(
    o: &Ops<'a>,
    imk: ObjectHandle,
    data: &[u8],
    key_type: KeyType,
) -> Result<Temp<'a>, P11Error> {
    o.derive_by(imk, data, key_type, KeyUsage::WRAPPABLE)
}

/// DGI 8000 under an SCP02 S-DEK: each ICC master key derived inside and wrapped,
/// by the first way the token has (see [`DesWrap`]), then the padding block.
pub(super) fn scp02_icc_keys(
    o: &Ops,
    workers: &Workers,
    dek: ObjectHandle,
    keys: &SealedIccKeys,
    pad: bool,
) -> Result<Vec<u8>, KeyStoreError> {
    let imks = imks(o, keys)?;
    let data = &*keys.derivation_data;
    let mut way = DesWrap::from_u8(workers.des_wrap.load(Ordering::Relaxed));
    let mut out = Vec::with_capacity(56);
    for imk in imks {
        loop {
            let attempt: Result<Vec<u8>, P11Error> = match way {
                DesWrap::Ecb => icc_key_to_wrap(o, imk, data, KeyType::DES2)
                    .and_then(|mk| o.s.wrap_key(&Mechanism::Des3Ecb, dek, mk.h)),
                DesWrap::CbcHalves => {
                    let half = |d: &[u8]| {
                        icc_key_to_wrap(o, imk, d, KeyType::DES)
                            .and_then(|k| o.s.wrap_key(&Mechanism::Des3Cbc([0; 8]), dek, k.h))
                    };
                    half(&data[..8]).and_then(|l| Ok([l, half(&data[8..])?].concat()))
                }
                DesWrap::ReadOut => {
                    let mk = o.derive(imk, data, KeyType::DES2, KeyUsage::READABLE)?;
                    let clear = Zeroizing::new(with_odd_parity(&o.value(mk.h)?));
                    o.s.encrypt(&Mechanism::Des3Ecb, dek, &clear)
                }
            };
            match attempt {
                Ok(c) if c.len() == 16 => {
                    out.extend_from_slice(&c);
                    break;
                }
                Ok(c) => {
                    return Err(KeyStoreError::Hsm(format!(
                        "the token wrapped a double-length key into {} bytes, not 16",
                        c.len()
                    )))
                }
                Err(e) if unsupported(&e) && way != DesWrap::ReadOut => {
                    way = if way == DesWrap::Ecb {
                        DesWrap::CbcHalves
                    } else {
                        DesWrap::ReadOut
                    };
                    if way == DesWrap::ReadOut && !workers.development {
                        return Err(KeyStoreError::NotSupported(format!(
                            "wrapping ICC keys under a DES key in token '{}' (C_WrapKey has \
                             neither CKM_DES3_ECB nor CKM_DES3_CBC; reading the keys out is \
                             allowed on development stations only)",
                            workers.token
                        )));
                    }
                    tracing::info!(token = %workers.token, way = ?way, "ICC keys: the token lacks a DES key wrapping mechanism; trying the next way");
                    workers.des_wrap.store(way as u8, Ordering::Relaxed);
                }
                Err(e) => return Err(o.err(e)),
            }
        }
    }
    if pad {
        out.extend(o.encrypt(&Mechanism::Des3Ecb, dek, &pad80(&[], DES_BLOCK))?);
    }
    Ok(out)
}

/// DGI 8000 under an SCP03 DEK (AES CBC, zero ICV over the DGI): each double-length
/// ICC master key is one AES block, wrapped with `CKM_AES_CBC` whose ICV is the previous
/// block's ciphertext — the chaining of one CBC pass over the whole DGI.
pub(super) fn scp03_icc_keys(
    o: &Ops,
    workers: &Workers,
    dek: ObjectHandle,
    keys: &SealedIccKeys,
    pad: bool,
) -> Result<Vec<u8>, KeyStoreError> {
    let imks = imks(o, keys)?;
    let data = &*keys.derivation_data;
    let mut iv = [0u8; 16];
    let mut out = Vec::with_capacity(64);
    for imk in imks {
        let mk = icc_key_to_wrap(o, imk, data, KeyType::DES2).map_err(|e| o.err(e))?;
        let c = match o.s.wrap_key(&Mechanism::AesCbc(iv), dek, mk.h) {
            Ok(c) => c,
            Err(e) if unsupported(&e) && workers.development => {
                let mk = o.derive(imk, data, KeyType::DES2, KeyUsage::READABLE)?;
                let clear = Zeroizing::new(with_odd_parity(&o.value(mk.h)?));
                o.encrypt(&Mechanism::AesCbc(iv), dek, &clear)?
            }
            Err(e) => return Err(o.err(e)),
        };
        if c.len() != 16 {
            return Err(KeyStoreError::Hsm(format!(
                "the token wrapped a double-length key into {} bytes, not 16",
                c.len()
            )));
        }
        iv.copy_from_slice(&c);
        out.extend_from_slice(&c);
    }
    if pad {
        out.extend(o.encrypt(&Mechanism::AesCbc(iv), dek, &pad80(&[], AES_BLOCK))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::crypto::{aes_cbc_encrypt, tdes_cbc_encrypt, tdes_ecb_encrypt};

    const KEK: [u8; 16] = *b"\x40\x41\x42\x43\x44\x45\x46\x47\x48\x49\x4A\x4B\x4C\x4D\x4E\x4F";
    const MK: [u8; 16] = *b"\x3E\xB3\xB6\x25\x76\xBA\xBF\x83\x1A\x4C\x67\x2C\xCB\x6D\xB3\x34";

    #[test]
    fn two_halves_each_wrapped_with_cbc_and_a_zero_icv_are_the_ecb_of_the_key() {
        // The second way of wrapping an ICC key under a DES DEK gives CPS's bytes.
        let halves = [
            tdes_cbc_encrypt(&KEK, &[0; 8], &MK[..8]).unwrap(),
            tdes_cbc_encrypt(&KEK, &[0; 8], &MK[8..]).unwrap(),
        ]
        .concat();
        assert_eq!(halves, tdes_ecb_encrypt(&KEK, &MK).unwrap());
    }

    #[test]
    fn keys_wrapped_with_the_previous_ciphertext_as_icv_are_one_cbc_pass_over_the_dgi() {
        // SCP03: three 16-byte keys, each wrapped with CKM_AES_CBC, chain as the DGI does.
        let keys = [MK, KEK, [0x5A; 16]];
        let mut iv = [0u8; 16];
        let mut chained = Vec::new();
        for k in keys {
            let c = aes_cbc_encrypt(&KEK, &iv, &k).unwrap();
            iv.copy_from_slice(&c);
            chained.extend(c);
        }
        assert_eq!(
            chained,
            aes_cbc_encrypt(&KEK, &[0; 16], &keys.concat()).unwrap()
        );
    }
}
