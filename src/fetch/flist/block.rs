//! Blocks: decoding and verifying what a store returns, before a byte of it is used.
//!
//! - v1 (0-flist): stored = XXTEA(snappy(plain), key), key = blake2b-128(plain),
//!   id = blake2b-128(stored). XXTEA as 0-flist's xxtea-c uses it: little-endian words, the
//!   plain length appended as a last word before encrypting, a raw 16-byte key.
//! - v2 (rfs 2): stored = AES-256-GCM(snappy(plain)) ‖ tag with key = blake2b-256(plain),
//!   nonce = key[..12], no associated data; id = blake2b-256(stored).
//!
//! [`decode`] checks the id (so a store cannot hand out another block), then opens, then checks
//! the key (so a wrong plain can't pass even with a matching id). The encoders exist for tests
//! and test generators.
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::{hex, BlockRef, Error, MAX_BLOCK_PLAIN};

pub use super::v1::blake2b_128;

/// blake2b-256, as rfs 2 uses for block ids and keys.
pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    use blake2::digest::consts::U32;
    use blake2::Digest;
    blake2::Blake2b::<U32>::digest(data).into()
}

/// Plain bytes of `stored`, the bytes a store returned for `b`, once every hash matched.
pub fn decode(b: &BlockRef, stored: &[u8]) -> Result<Vec<u8>, Error> {
    decode_owned(b, stored.to_vec())
}

/// [`decode`] of bytes the caller gives up (v2 decrypts them in place: no copy).
pub fn decode_owned(b: &BlockRef, mut stored: Vec<u8>) -> Result<Vec<u8>, Error> {
    let mut plain = Vec::new();
    decode_into(b, &mut stored, &mut plain)?;
    Ok(plain)
}

/// [`decode`] into the caller's buffers: `stored` is decrypted in place (its bytes are lost
/// either way), the plain bytes replace what `plain` held, in its allocation when it is big
/// enough (a worker reuses one buffer for every block: no allocation, no page faults).
pub fn decode_into(b: &BlockRef, stored: &mut [u8], plain: &mut Vec<u8>) -> Result<(), Error> {
    match b {
        BlockRef::V1 { id, key } => {
            let got = blake2b_128(stored);
            if &got != id {
                return Err(mismatch("id", id, &got));
            }
            let compressed = xxtea_decrypt(stored, key)?;
            unsnappy_into(&compressed, plain)?;
            let got = blake2b_128(plain);
            if &got != key {
                return Err(mismatch("key (hash of the plain bytes)", key, &got));
            }
            Ok(())
        }
        BlockRef::V2 { id, key } => {
            let got = blake2b_256(stored);
            if &got != id {
                return Err(mismatch("id", id, &got));
            }
            let aead = LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::new("bad AES key"))?,
            );
            let nonce = Nonce::try_assume_unique_for_key(&key[..12])
                .map_err(|_| Error::new("bad nonce"))?;
            let compressed = aead
                .open_in_place(nonce, Aad::empty(), stored)
                .map_err(|_| Error::new("AES-256-GCM: the block does not open with its key"))?;
            unsnappy_into(compressed, plain)?;
            let got = blake2b_256(plain);
            if &got != key {
                return Err(mismatch("key (hash of the plain bytes)", key, &got));
            }
            Ok(())
        }
    }
}

fn mismatch(what: &str, want: &[u8], got: &[u8]) -> Error {
    Error::new(format!(
        "{what} mismatch: expected {}, got {}",
        hex(want),
        hex(got)
    ))
}

fn unsnappy_into(data: &[u8], plain: &mut Vec<u8>) -> Result<(), Error> {
    let len = snap::raw::decompress_len(data).map_err(|e| Error::new(format!("snappy: {e}")))?;
    if len > MAX_BLOCK_PLAIN {
        return Err(Error::new(format!(
            "snappy: block claims {len} plain bytes, more than {MAX_BLOCK_PLAIN}"
        )));
    }
    // Truncates or grows (zeroing only the growth): the old bytes are overwritten below.
    plain.resize(len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(data, plain)
        .map_err(|e| Error::new(format!("snappy: {e}")))?;
    plain.truncate(n);
    Ok(())
}

/// v1 encoding of `plain`: (block ref, stored bytes).
pub fn encode_v1(plain: &[u8]) -> (BlockRef, Vec<u8>) {
    let key = blake2b_128(plain);
    let compressed = snap::raw::Encoder::new()
        .compress_vec(plain)
        .unwrap_or_default();
    let stored = xxtea_encrypt(&compressed, &key);
    let id = blake2b_128(&stored);
    (BlockRef::V1 { id, key }, stored)
}

/// v2 encoding of `plain`: (block ref, stored bytes).
pub fn encode_v2(plain: &[u8]) -> (BlockRef, Vec<u8>) {
    let key = blake2b_256(plain);
    let mut buf = snap::raw::Encoder::new()
        .compress_vec(plain)
        .unwrap_or_default();
    let sealed = UnboundKey::new(&AES_256_GCM, &key)
        .ok()
        .zip(Nonce::try_assume_unique_for_key(&key[..12]).ok())
        .and_then(|(k, n)| {
            LessSafeKey::new(k)
                .seal_in_place_append_tag(n, Aad::empty(), &mut buf)
                .ok()
        });
    debug_assert!(sealed.is_some());
    let id = blake2b_256(&buf);
    (BlockRef::V2 { id, key }, buf)
}

const DELTA: u32 = 0x9e37_79b9;

fn key_words(key: &[u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_le_bytes([key[i], key[i + 1], key[i + 2], key[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

fn mx(sum: u32, y: u32, z: u32, p: usize, e: u32, k: &[u32; 4]) -> u32 {
    (((z >> 5) ^ (y << 2)).wrapping_add((y >> 3) ^ (z << 4)))
        ^ ((sum ^ y).wrapping_add(k[(p & 3) ^ e as usize] ^ z))
}

/// XXTEA with the length word, as 0-flist's blocks are encrypted.
pub fn xxtea_encrypt(data: &[u8], key: &[u8; 16]) -> Vec<u8> {
    let mut v: Vec<u32> = data
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect();
    v.push(data.len() as u32);
    let k = key_words(key);
    let n = v.len() - 1;
    if n >= 1 {
        let rounds = 6 + 52 / v.len();
        let (mut sum, mut z) = (0u32, v[n]);
        for _ in 0..rounds {
            sum = sum.wrapping_add(DELTA);
            let e = (sum >> 2) & 3;
            for p in 0..n {
                let y = v[p + 1];
                v[p] = v[p].wrapping_add(mx(sum, y, z, p, e, &k));
                z = v[p];
            }
            let y = v[0];
            v[n] = v[n].wrapping_add(mx(sum, y, z, n, e, &k));
            z = v[n];
        }
    }
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Inverse of [`xxtea_encrypt`]; an error if the length word does not fit (wrong key or data).
pub fn xxtea_decrypt(data: &[u8], key: &[u8; 16]) -> Result<Vec<u8>, Error> {
    if data.len() < 8 || !data.len().is_multiple_of(4) {
        return Err(Error::new(format!(
            "XXTEA: {} bytes is not a whole number of words (at least 2)",
            data.len()
        )));
    }
    let mut v: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let k = key_words(key);
    let n = v.len() - 1;
    let rounds = 6 + 52 / v.len() as u32;
    let mut sum = rounds.wrapping_mul(DELTA);
    let mut y = v[0];
    while sum != 0 {
        let e = (sum >> 2) & 3;
        for p in (1..=n).rev() {
            let z = v[p - 1];
            v[p] = v[p].wrapping_sub(mx(sum, y, z, p, e, &k));
            y = v[p];
        }
        let z = v[n];
        v[0] = v[0].wrapping_sub(mx(sum, y, z, 0, e, &k));
        y = v[0];
        sum = sum.wrapping_sub(DELTA);
    }
    let len = v[n] as usize;
    let room = 4 * n;
    if len > room || len + 3 < room {
        return Err(Error::new(
            "XXTEA: the length word does not fit: wrong key or corrupt block",
        ));
    }
    let mut out: Vec<u8> = v[..n].iter().flat_map(|w| w.to_le_bytes()).collect();
    out.truncate(len);
    Ok(out)
}
