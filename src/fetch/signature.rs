//! Signed boot manifests: a detached ed25519 signature next to the manifest, checked against
//! public keys built into the image.
//!
//! The manifest names every artifact with its SHA-256, so whoever can change the manifest
//! decides what the node runs. TLS only says which server we talk to; a signature says who
//! made the manifest, whatever the transport and whichever mirror served it.
//!
//! **Format.** `<manifest URL>.sig` (after redirects) is a text file of three lines:
//!
//! ```text
//! zos-manifest-signature 1
//! key 1f2e3d4c5b6a7980
//! ed25519 <128 hex digits: the signature of the manifest's exact bytes>
//! ```
//!
//! The key id is the first 8 bytes of the SHA-256 of the 32-byte public key, in hex. Several
//! keys may be trusted at once (rotation: sign with the new key once every node trusts it, then
//! drop the old one). Keys come from `keys/manifest-keys.txt`, compiled in (one key a line:
//! `<64 hex> [name]`, `#` comments); outside `prod`, `zos.manifest_key=<64 hex>` adds one (labs,
//! a farm's own hub). `zos-netboot manifest-keygen FILE` makes a key, `zos-netboot
//! sign-manifest --key FILE MANIFEST` writes `MANIFEST.sig` (see `scripts/sign-manifests.sh`).
//!
//! **Policy** ([`Trust::check`]): a signature that is present must verify with a trusted key,
//! in every runmode (a wrong signature is an attack, not a missing feature). Without one, the
//! manifest is refused in `prod`, and anywhere when it came over plain `http://` (then nothing
//! at all vouches for it); an unsigned `https://` manifest outside `prod` is taken (the hub's
//! certificate vouches for it).
use std::fmt::Write as _;

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// The keys compiled into this binary.
pub const BUILTIN_KEYS: &str = include_str!("../../keys/manifest-keys.txt");
/// First line of a signature file.
pub const MAGIC: &str = "zos-manifest-signature 1";
/// A signature file is three short lines; anything longer is not one.
pub const MAX_SIGNATURE_BYTES: usize = 1024;

/// One trusted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key: [u8; 32],
    /// From the keys file (for the console), or empty.
    pub name: String,
}

impl PublicKey {
    /// The key id: the first 8 bytes of SHA-256(key), hex.
    pub fn id(&self) -> String {
        key_id(&self.key)
    }

    /// `<64 hex>`: what `zos.manifest_key=` and the keys file take.
    pub fn parse_hex(s: &str, name: &str) -> Result<PublicKey, String> {
        let bytes = unhex(s.trim()).ok_or_else(|| format!("{s:?} is not 64 hex digits"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("{s:?} is not 64 hex digits (an ed25519 public key)"))?;
        Ok(PublicKey {
            key,
            name: name.to_string(),
        })
    }
}

/// Every key of a keys file (`<64 hex> [name]` a line, `#` comments, blank lines).
pub fn parse_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (hex, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        keys.push(
            PublicKey::parse_hex(hex, name.trim()).map_err(|e| format!("line {}: {e}", n + 1))?,
        );
    }
    Ok(keys)
}

/// What the node trusts to vouch for a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    pub keys: Vec<PublicKey>,
    /// `prod`: no manifest without a valid signature.
    pub require_signature: bool,
}

/// A manifest that passed [`Trust::check`]: signed by this key, or taken unsigned (None).
pub type SignedBy = Option<PublicKey>;

impl Trust {
    /// The built-in keys, plus `extra` (from `zos.manifest_key=`) outside `prod`.
    pub fn for_runmode(prod: bool, extra: &[String]) -> Result<Trust, String> {
        let mut keys =
            parse_keys(BUILTIN_KEYS).map_err(|e| format!("keys/manifest-keys.txt: {e}"))?;
        if prod && !extra.is_empty() {
            log::warn!("zos.manifest_key= is ignored in runmode prod: only built-in keys count");
        } else {
            for k in extra {
                keys.push(PublicKey::parse_hex(k, "zos.manifest_key")?);
            }
        }
        Ok(Trust {
            keys,
            require_signature: prod,
        })
    }

    /// Whether `body`, fetched from `url`, may be used, given its signature file (`None`: the
    /// hub has none, a 404). The error says what is wrong and what to do.
    pub fn check(&self, url: &str, body: &[u8], sig: Option<&[u8]>) -> Result<SignedBy, String> {
        let Some(sig) = sig else {
            if self.require_signature {
                return Err(format!(
                    "{url} is not signed ({url}.sig: not found) and runmode prod takes only \
                     signed manifests; the hub operator signs it with `zos-netboot \
                     sign-manifest`"
                ));
            }
            if !url.starts_with("https://") {
                return Err(format!(
                    "{url} came over plain http and is not signed ({url}.sig: not found): \
                     nothing vouches for it; use an https hub or sign the manifest"
                ));
            }
            return Ok(None);
        };
        let (id, signature) = parse_signature(sig).map_err(|e| format!("{url}.sig: {e}"))?;
        let Some(key) = self.keys.iter().find(|k| k.id() == id) else {
            return Err(format!(
                "{url}.sig: signed by key {id}, which this image does not trust (trusted: {})",
                self.key_list()
            ));
        };
        UnparsedPublicKey::new(&ED25519, &key.key)
            .verify(body, &signature)
            .map_err(|_| {
                format!(
                    "{url}.sig: the signature by key {id} does not match the manifest (altered \
                     on the way, or signed before a change)"
                )
            })?;
        Ok(Some(key.clone()))
    }

    fn key_list(&self) -> String {
        if self.keys.is_empty() {
            return "none".into();
        }
        self.keys
            .iter()
            .map(PublicKey::id)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The key id and the 64-byte signature of a signature file.
pub fn parse_signature(text: &[u8]) -> Result<(String, [u8; 64]), String> {
    if text.len() > MAX_SIGNATURE_BYTES {
        return Err(format!("longer than {MAX_SIGNATURE_BYTES} bytes"));
    }
    let text = std::str::from_utf8(text).map_err(|_| "not text")?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(MAGIC) {
        return Err(format!("does not start with {MAGIC:?}"));
    }
    let id = lines
        .next()
        .and_then(|l| l.strip_prefix("key "))
        .map(str::trim)
        .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("no `key <16 hex>` line")?
        .to_ascii_lowercase();
    let sig = lines
        .next()
        .and_then(|l| l.strip_prefix("ed25519 "))
        .and_then(|h| unhex(h.trim()))
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or("no `ed25519 <128 hex>` line")?;
    if lines.next().is_some() {
        return Err("more than three lines".into());
    }
    Ok((id, sig))
}

/// A new signing key: (32-byte seed as hex, to keep secret; the public key).
pub fn keygen() -> Result<(String, PublicKey), String> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| "no randomness from the kernel")?;
    let public = public_of(&seed)?;
    Ok((hex(&seed), public))
}

/// The signature file for `manifest`, signed with the key whose seed is `seed_hex`.
pub fn sign(seed_hex: &str, manifest: &[u8]) -> Result<String, String> {
    let seed = unhex(seed_hex.trim())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or("the key file must hold 64 hex digits (made by `zos-netboot manifest-keygen`)")?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| "not an ed25519 seed")?;
    let public = public_of(&seed)?;
    Ok(format!(
        "{MAGIC}\nkey {}\ned25519 {}\n",
        public.id(),
        hex(pair.sign(manifest).as_ref())
    ))
}

/// `zos-netboot manifest-keygen FILE`: a new key, its seed written to FILE (0600, never
/// overwritten); returns the line to add to `keys/manifest-keys.txt`.
pub fn keygen_cli(file: &str) -> Result<String, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let (seed, public) = keygen()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| format!("cannot create {file}: {e} (an existing key is never overwritten)"))?;
    f.write_all(format!("{seed}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {file}: {e}"))?;
    Ok(format!(
        "key {} written to {file} (secret: keep it off the hub)\n\
         add this line to keys/manifest-keys.txt and rebuild the image:\n{} {}",
        public.id(),
        hex(&public.key),
        std::path::Path::new(file)
            .file_stem()
            .map_or("key".into(), |s| s.to_string_lossy())
    ))
}

/// `zos-netboot sign-manifest --key FILE MANIFEST...`: writes `MANIFEST.sig` next to each.
pub fn sign_cli(key_file: &str, manifests: &[String]) -> Result<String, String> {
    let seed = std::fs::read_to_string(key_file)
        .map_err(|e| format!("cannot read the key {key_file}: {e}"))?;
    let mut out = Vec::new();
    for m in manifests {
        let body = std::fs::read(m).map_err(|e| format!("cannot read {m}: {e}"))?;
        let sig = sign(&seed, &body)?;
        let path = format!("{m}.sig");
        crate::net::dhcp4::apply::write_file_atomic(std::path::Path::new(&path), sig.as_bytes())
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        out.push(format!(
            "{path}: {}",
            sig.lines().nth(1).unwrap_or_default()
        ));
    }
    Ok(out.join("\n"))
}

/// The public key of a seed.
pub fn public_of(seed: &[u8; 32]) -> Result<PublicKey, String> {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| "not an ed25519 seed")?;
    let key: [u8; 32] = pair
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|_| "unexpected public key length")?;
    Ok(PublicKey {
        key,
        name: String::new(),
    })
}

fn key_id(key: &[u8; 32]) -> String {
    hex(&ring::digest::digest(&ring::digest::SHA256, key).as_ref()[..8])
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &[u8] = br#"{"version":1,"artifacts":[]}"#;

    fn trust(prod: bool) -> (String, String, Trust) {
        let (seed, public) = keygen().unwrap();
        let (_, old) = keygen().unwrap();
        let trust = Trust {
            keys: vec![old, public.clone()],
            require_signature: prod,
        };
        (seed, public.id(), trust)
    }

    #[test]
    fn a_signed_manifest_verifies_with_any_trusted_key() {
        let (seed, id, trust) = trust(true);
        let sig = sign(&seed, MANIFEST).unwrap();
        assert!(
            sig.starts_with(&format!("{MAGIC}\nkey {id}\ned25519 ")),
            "{sig}"
        );
        for url in ["https://hub/m.json", "http://hub/m.json"] {
            let by = trust.check(url, MANIFEST, Some(sig.as_bytes())).unwrap();
            assert_eq!(by.map(|k| k.id()), Some(id.clone()));
        }
    }

    #[test]
    fn a_wrong_signature_is_refused_in_every_runmode() {
        for prod in [true, false] {
            let (seed, id, trust) = trust(prod);
            let sig = sign(&seed, MANIFEST).unwrap();
            let altered = br#"{"version":1,"artifacts":[{}]}"#;
            let e = trust
                .check("https://hub/m.json", altered, Some(sig.as_bytes()))
                .unwrap_err();
            assert!(e.contains(&format!("by key {id} does not match")), "{e}");
            // Signed by a key the image does not trust.
            let (stranger, _) = keygen().unwrap();
            let sig = sign(&stranger, MANIFEST).unwrap();
            let e = trust
                .check("https://hub/m.json", MANIFEST, Some(sig.as_bytes()))
                .unwrap_err();
            assert!(e.contains("does not trust"), "{e}");
            // Garbage.
            for junk in [&b"hello"[..], b"", &[b'x'; 2000]] {
                assert!(trust
                    .check("https://hub/m.json", MANIFEST, Some(junk))
                    .is_err());
            }
        }
    }

    #[test]
    fn unsigned_is_refused_in_prod_and_over_http() {
        let (_, _, prod) = trust(true);
        let e = prod
            .check("https://hub/m.json", MANIFEST, None)
            .unwrap_err();
        assert!(
            e.contains("runmode prod takes only signed manifests"),
            "{e}"
        );
        let (_, _, dev) = trust(false);
        assert_eq!(dev.check("https://hub/m.json", MANIFEST, None), Ok(None));
        let e = dev.check("http://hub/m.json", MANIFEST, None).unwrap_err();
        assert!(e.contains("plain http and is not signed"), "{e}");
    }

    #[test]
    fn keys_files_and_cmdline_keys() {
        let (_, a) = keygen().unwrap();
        let text = format!("# hub keys\n\n{} grid-2026  # current\n", hex(&a.key));
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!((keys[0].key, keys[0].name.as_str()), (a.key, "grid-2026"));
        assert!(parse_keys("abcd\n").unwrap_err().starts_with("line 1:"));
        assert!(
            parse_keys(BUILTIN_KEYS).is_ok(),
            "the compiled-in file parses"
        );
        let extra = [hex(&a.key)];
        let t = Trust::for_runmode(false, &extra).unwrap();
        assert!(t.keys.iter().any(|k| k.key == a.key));
        let t = Trust::for_runmode(true, &extra).unwrap();
        assert!(
            !t.keys.iter().any(|k| k.key == a.key),
            "prod: built-in keys only"
        );
        assert!(t.require_signature);
    }
}
