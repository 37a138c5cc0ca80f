//! Block-cipher primitives shared by GlobalPlatform secure channels, CPS and EMV
//! derivations: 3DES (2- and 3-key) and AES, ECB/CBC, ISO 9797-1 MACs, AES-CMAC,
//! padding, parity and key check values.
//!
//! Inputs are byte slices so that key material stays in the caller's zeroizing
//! containers; intermediate key schedules are dropped at the end of each call.

use aes::{Aes128, Aes192, Aes256};
use cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use cmac::{Cmac, Mac};
use des::{Des, TdesEde2, TdesEde3};
use thiserror::Error;

/// A cryptographic primitive was called with inputs it cannot use.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The key has a length the algorithm does not take.
    #[error("{algorithm} key must be {expected} bytes, got {got}")]
    KeyLength {
        /// Algorithm name.
        algorithm: &'static str,
        /// Accepted lengths, in words.
        expected: &'static str,
        /// Length received.
        got: usize,
    },
    /// The data is not a whole number of cipher blocks.
    #[error("data of {len} bytes is not a multiple of the {block}-byte block")]
    NotBlockAligned {
        /// Data length.
        len: usize,
        /// Block size.
        block: usize,
    },
    /// The HSM holding the key refused or failed the operation (never names a key value).
    #[error("HSM: {0}")]
    Hsm(String),
}

/// DES / 3DES block size.
pub const DES_BLOCK: usize = 8;
/// AES block size.
pub const AES_BLOCK: usize = 16;

fn aligned(data: &[u8], block: usize) -> Result<(), CryptoError> {
    if data.len() % block == 0 {
        Ok(())
    } else {
        Err(CryptoError::NotBlockAligned {
            len: data.len(),
            block,
        })
    }
}

/// A 3DES key schedule for 16-byte (K1 K2 K1) or 24-byte keys.
enum Tdes {
    Two(TdesEde2),
    Three(TdesEde3),
}

impl Tdes {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        match key.len() {
            16 => Ok(Tdes::Two(TdesEde2::new_from_slice(key).expect("16 bytes"))),
            24 => Ok(Tdes::Three(
                TdesEde3::new_from_slice(key).expect("24 bytes"),
            )),
            got => Err(CryptoError::KeyLength {
                algorithm: "3DES",
                expected: "16 or 24",
                got,
            }),
        }
    }

    fn encrypt(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Tdes::Two(c) => c.encrypt_block(b),
            Tdes::Three(c) => c.encrypt_block(b),
        }
    }

    fn decrypt(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Tdes::Two(c) => c.decrypt_block(b),
            Tdes::Three(c) => c.decrypt_block(b),
        }
    }
}

/// An AES key schedule for 16-, 24- or 32-byte keys.
enum AesKey {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl AesKey {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        match key.len() {
            16 => Ok(AesKey::A128(Aes128::new_from_slice(key).expect("16"))),
            24 => Ok(AesKey::A192(Aes192::new_from_slice(key).expect("24"))),
            32 => Ok(AesKey::A256(Aes256::new_from_slice(key).expect("32"))),
            got => Err(CryptoError::KeyLength {
                algorithm: "AES",
                expected: "16, 24 or 32",
                got,
            }),
        }
    }

    fn encrypt(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            AesKey::A128(c) => c.encrypt_block(b),
            AesKey::A192(c) => c.encrypt_block(b),
            AesKey::A256(c) => c.encrypt_block(b),
        }
    }

    fn decrypt(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            AesKey::A128(c) => c.decrypt_block(b),
            AesKey::A192(c) => c.decrypt_block(b),
            AesKey::A256(c) => c.decrypt_block(b),
        }
    }
}

fn des_single(key: &[u8]) -> Result<Des, CryptoError> {
    Des::new_from_slice(key).map_err(|_| CryptoError::KeyLength {
        algorithm: "DES",
        expected: "8",
        got: key.len(),
    })
}

/// Single DES-ECB encryption of whole blocks.
pub fn des_ecb_encrypt(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    aligned(data, DES_BLOCK)?;
    let c = des_single(key)?;
    let mut out = data.to_vec();
    for b in out.chunks_mut(DES_BLOCK) {
        c.encrypt_block(GenericArray::from_mut_slice(b));
    }
    Ok(out)
}

/// A block cipher key schedule, so ECB and CBC are written once for 3DES and AES.
trait BlockSchedule {
    /// Block size in bytes.
    const BLOCK: usize;
    fn encrypt(&self, block: &mut [u8]);
    fn decrypt(&self, block: &mut [u8]);
}

impl BlockSchedule for Tdes {
    const BLOCK: usize = DES_BLOCK;
    fn encrypt(&self, block: &mut [u8]) {
        Tdes::encrypt(self, block)
    }
    fn decrypt(&self, block: &mut [u8]) {
        Tdes::decrypt(self, block)
    }
}

impl BlockSchedule for AesKey {
    const BLOCK: usize = AES_BLOCK;
    fn encrypt(&self, block: &mut [u8]) {
        AesKey::encrypt(self, block)
    }
    fn decrypt(&self, block: &mut [u8]) {
        AesKey::decrypt(self, block)
    }
}

fn ecb<C: BlockSchedule>(c: &C, data: &[u8], encrypt: bool) -> Result<Vec<u8>, CryptoError> {
    aligned(data, C::BLOCK)?;
    let mut out = data.to_vec();
    for b in out.chunks_mut(C::BLOCK) {
        if encrypt {
            c.encrypt(b)
        } else {
            c.decrypt(b)
        }
    }
    Ok(out)
}

fn cbc_encrypt<C: BlockSchedule>(c: &C, iv: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    aligned(data, C::BLOCK)?;
    let mut chain = iv.to_vec();
    let mut out = Vec::with_capacity(data.len());
    for block in data.chunks(C::BLOCK) {
        for (x, b) in chain.iter_mut().zip(block) {
            *x ^= b;
        }
        c.encrypt(&mut chain);
        out.extend_from_slice(&chain);
    }
    Ok(out)
}

fn cbc_decrypt<C: BlockSchedule>(c: &C, iv: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    aligned(data, C::BLOCK)?;
    let mut prev = iv;
    let mut out = Vec::with_capacity(data.len());
    for block in data.chunks(C::BLOCK) {
        // Clear text (possibly key material) is wiped from the scratch block.
        let mut b = zeroize::Zeroizing::new(block.to_vec());
        c.decrypt(&mut b);
        for (x, p) in b.iter_mut().zip(prev) {
            *x ^= p;
        }
        out.extend_from_slice(&b);
        prev = block;
    }
    Ok(out)
}

/// 3DES-ECB encryption of whole blocks.
pub fn tdes_ecb_encrypt(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    ecb(&Tdes::new(key)?, data, true)
}

/// 3DES-ECB decryption of whole blocks.
pub fn tdes_ecb_decrypt(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    ecb(&Tdes::new(key)?, data, false)
}

/// 3DES-CBC encryption of whole blocks with the given IV.
pub fn tdes_cbc_encrypt(key: &[u8], iv: &[u8; 8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    cbc_encrypt(&Tdes::new(key)?, iv, data)
}

/// 3DES-CBC decryption of whole blocks with the given IV.
pub fn tdes_cbc_decrypt(key: &[u8], iv: &[u8; 8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    cbc_decrypt(&Tdes::new(key)?, iv, data)
}

/// AES-ECB encryption of whole blocks.
pub fn aes_ecb_encrypt(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    ecb(&AesKey::new(key)?, data, true)
}

/// AES-CBC encryption of whole blocks with the given IV.
pub fn aes_cbc_encrypt(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    cbc_encrypt(&AesKey::new(key)?, iv, data)
}

/// AES-CBC decryption of whole blocks with the given IV.
pub fn aes_cbc_decrypt(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    cbc_decrypt(&AesKey::new(key)?, iv, data)
}

/// AES-CMAC (NIST SP 800-38B) over `data`, full 16 bytes.
pub fn aes_cmac(key: &[u8], data: &[u8]) -> Result<[u8; 16], CryptoError> {
    let tag = match key.len() {
        16 => cmac_with::<Aes128>(key, data),
        24 => cmac_with::<Aes192>(key, data),
        32 => cmac_with::<Aes256>(key, data),
        got => {
            return Err(CryptoError::KeyLength {
                algorithm: "AES-CMAC",
                expected: "16, 24 or 32",
                got,
            })
        }
    };
    Ok(tag)
}

fn cmac_with<C>(key: &[u8], data: &[u8]) -> [u8; 16]
where
    C: cipher::BlockCipher
        + cipher::BlockEncrypt
        + cipher::KeyInit
        + Clone
        + cipher::BlockSizeUser<BlockSize = cipher::consts::U16>,
    Cmac<C>: Mac + KeyInit,
{
    let mut mac = <Cmac<C> as KeyInit>::new_from_slice(key).expect("length checked by caller");
    mac.update(data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// ISO/IEC 7816-4 / ISO 9797-1 padding method 2: `80` then zeros to the block size.
pub fn pad80(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    out.push(0x80);
    while out.len() % block != 0 {
        out.push(0);
    }
    out
}

/// ISO 9797-1 padding method 1: zeros to the block size (nothing added when aligned,
/// except that empty data becomes one zero block).
pub fn pad_zero(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.is_empty() {
        out.resize(block, 0);
    }
    while out.len() % block != 0 {
        out.push(0);
    }
    out
}

/// ISO 9797-1 MAC algorithm 3 ("retail MAC") over already padded data:
/// single-DES CBC under K1, the last block finished with DES⁻¹ K2 then DES K1.
pub fn retail_mac(key: &[u8], icv: &[u8; 8], padded: &[u8]) -> Result<[u8; 8], CryptoError> {
    aligned(padded, DES_BLOCK)?;
    if key.len() != 16 {
        return Err(CryptoError::KeyLength {
            algorithm: "ISO 9797-1 MAC algorithm 3",
            expected: "16",
            got: key.len(),
        });
    }
    let k1 = des_single(&key[..8])?;
    let k2 = des_single(&key[8..16])?;
    let mut chain = *icv;
    for block in padded.chunks(DES_BLOCK) {
        for (x, b) in chain.iter_mut().zip(block) {
            *x ^= b;
        }
        k1.encrypt_block(GenericArray::from_mut_slice(&mut chain));
    }
    k2.decrypt_block(GenericArray::from_mut_slice(&mut chain));
    k1.encrypt_block(GenericArray::from_mut_slice(&mut chain));
    Ok(chain)
}

/// Full 3DES-CBC MAC (ISO 9797-1 MAC algorithm 1 with 3DES) over already padded data.
pub fn tdes_cbc_mac(key: &[u8], icv: &[u8; 8], padded: &[u8]) -> Result<[u8; 8], CryptoError> {
    let enc = tdes_cbc_encrypt(key, icv, padded)?;
    let mut out = [0u8; 8];
    out.copy_from_slice(&enc[enc.len() - 8..]);
    Ok(out)
}

/// Sets odd parity on every byte of a DES key (the low bit is the parity bit).
pub fn with_odd_parity(key: &[u8]) -> Vec<u8> {
    key.iter()
        .map(|b| {
            let high = b & 0xFE;
            if high.count_ones() % 2 == 0 {
                high | 1
            } else {
                high
            }
        })
        .collect()
}

/// 3DES key check value: the first 3 bytes of 3DES-ECB(key, 8 zero bytes).
pub fn tdes_kcv(key: &[u8]) -> Result<[u8; 3], CryptoError> {
    let e = tdes_ecb_encrypt(key, &[0u8; 8])?;
    Ok([e[0], e[1], e[2]])
}

/// AES key check value as GlobalPlatform defines it: the first 3 bytes of
/// AES-ECB(key, 16 bytes of 01).
pub fn aes_kcv(key: &[u8]) -> Result<[u8; 3], CryptoError> {
    let e = aes_ecb_encrypt(key, &[0x01u8; 16])?;
    Ok([e[0], e[1], e[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn wipes_its_key_schedule_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    #[test]
    fn every_block_cipher_wipes_its_key_schedule_on_drop() {
        // Compiles only with the `zeroize` features of `des` and `aes` enabled.
        wipes_its_key_schedule_on_drop::<Des>();
        wipes_its_key_schedule_on_drop::<TdesEde2>();
        wipes_its_key_schedule_on_drop::<TdesEde3>();
        wipes_its_key_schedule_on_drop::<Aes128>();
        wipes_its_key_schedule_on_drop::<Aes192>();
        wipes_its_key_schedule_on_drop::<Aes256>();
    }

    #[test]
    fn tdes_kcv_matches_the_published_option_a_check_value() {
        // vectors/emv-gp-vectors.json option_a: ICC MK and its KCV.
        let kcv = tdes_kcv(&h("2F02C8B0E9CBC7B05B5167F7A1CDE6E5")).unwrap();
        assert_eq!(hex::encode_upper(kcv), "F23EFA");
    }

    #[test]
    fn aes_cmac_matches_nist_sp800_38b_example_2() {
        let key = h("2b7e151628aed2a6abf7158809cf4f3c");
        let msg = h("6bc1bee22e409f96e93d7e117393172a");
        let tag = aes_cmac(&key, &msg).unwrap();
        assert_eq!(hex::encode(tag), "070a16b46b4d4144f79bdd9dd04a287c");
    }

    #[test]
    fn cbc_round_trips_for_3des_and_aes() {
        let k16 = h("404142434445464748494A4B4C4D4E4F");
        let data = [7u8; 32];
        let e = tdes_cbc_encrypt(&k16, &[1; 8], &data).unwrap();
        assert_eq!(tdes_cbc_decrypt(&k16, &[1; 8], &e).unwrap(), data);
        let e = aes_cbc_encrypt(&k16, &[0; 16], &data).unwrap();
        assert_eq!(aes_cbc_decrypt(&k16, &[0; 16], &e).unwrap(), data);
    }

    #[test]
    fn retail_mac_with_equal_halves_equals_single_des_cbc_mac() {
        // With K1 = K2 the final DES⁻¹/DES pair cancels out.
        let key = h("0123456789ABCDEF0123456789ABCDEF");
        let data = pad80(b"retail", 8);
        let mac = retail_mac(&key, &[0; 8], &data).unwrap();
        let cbc = des_ecb_encrypt(&key[..8], &data).unwrap();
        assert_eq!(&mac[..], &cbc[..8]);
    }

    #[test]
    fn pad80_always_adds_at_least_one_byte() {
        assert_eq!(pad80(&[0u8; 8], 8).len(), 16);
        assert_eq!(pad80(&[1, 2], 8), vec![1, 2, 0x80, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn odd_parity_is_set_on_every_byte() {
        let k = with_odd_parity(&[0x00, 0x01, 0xFE, 0x7F]);
        assert!(k.iter().all(|b| b.count_ones() % 2 == 1), "{k:02X?}");
    }

    #[test]
    fn wrong_key_length_is_an_error_not_a_panic() {
        assert!(matches!(
            tdes_ecb_encrypt(&[0; 10], &[0; 8]),
            Err(CryptoError::KeyLength { got: 10, .. })
        ));
        assert!(matches!(
            aes_cmac(&[0; 15], b""),
            Err(CryptoError::KeyLength { got: 15, .. })
        ));
    }
}
