//! C2SP signed notes with Ed25519 keys (c2sp.org/signed-note), written and
//! read byte for byte as Go's `golang.org/x/mod/sumdb/note` does, so that
//! its `note.Open` accepts what this module signs and this module accepts
//! what `note.Sign` makes. Key texts are the same as Go's too:
//!
//! - verifier key: `NAME+HHHHHHHH+BASE64(0x01 ‖ public key)`
//! - signer key:   `PRIVATE+KEY+NAME+HHHHHHHH+BASE64(0x01 ‖ 32-byte seed)`
//!
//! where `HHHHHHHH` is the key id: the first 4 bytes of
//! `SHA-256(NAME ‖ "\n" ‖ 0x01 ‖ public key)` in hex. A signed note is the
//! text (ending in a newline), a blank line, then one line per signature:
//! `— NAME BASE64(key id ‖ Ed25519 signature of the text)`.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// The signature-type byte of Ed25519 in key texts and key ids.
const ALG_ED25519: u8 = 0x01;
/// The em dash and space that start a signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// At most this many signature lines are read (Go's limit).
const MAX_SIGNATURES: usize = 100;
/// A note longer than this is refused before it is parsed.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Why a key or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("bad key: {0}")]
    BadKey(String),
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("the note carries no signature by key {name}+{id:08x}")]
    NotSigned { name: String, id: u32 },
    #[error("the signature by key {name}+{id:08x} does not verify: the note was changed, or signed by another key")]
    BadSignature { name: String, id: u32 },
}

/// Whether `name` can name a key: non-empty, no whitespace, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The 4-byte key id of an Ed25519 key called `name`.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A public key that checks notes: what an auditor holds.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn new(name: &str, key: VerifyingKey) -> Result<VerifierKey, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::BadKey(format!(
                "key name {name:?} is empty or holds a space or a '+'"
            )));
        }
        Ok(VerifierKey {
            id: key_id(name, key.as_bytes()),
            name: name.to_string(),
            key,
        })
    }

    /// Parse `NAME+HHHHHHHH+BASE64` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        let bad = |why: &str| NoteError::BadKey(format!("verifier key {why}"));
        // A name holds no '+'; base64 may: split from the left, as Go does.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash16), Some(key64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is not NAME+KEYID+KEY"));
        };
        if text.starts_with("PRIVATE+KEY+") {
            return Err(bad("is a private (signer) key: give the public .pub file"));
        }
        let id = parse_id(hash16).ok_or_else(|| bad("has a bad key id (8 hex digits)"))?;
        let raw = b64().decode(key64).map_err(|_| bad("is not base64"))?;
        let Some((&ALG_ED25519, public)) = raw.split_first() else {
            return Err(bad("is not an Ed25519 key (type byte 0x01)"));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("does not hold 32 key bytes"))?;
        let key =
            VerifyingKey::from_bytes(&public).map_err(|_| bad("is not a valid Ed25519 point"))?;
        let v = VerifierKey::new(name, key)?;
        if v.id != id {
            return Err(bad("id does not match its name and key"));
        }
        Ok(v)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    fn verify(&self, text: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(text, &sig).is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, b64().encode(raw))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

fn parse_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// A private key that signs notes: what the log's writer holds. Its text
/// form is secret; `Debug` does not show it.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    id: u32,
    key: SigningKey,
}

impl SignerKey {
    /// A new random key called `name` (OS randomness).
    pub fn generate(name: &str) -> Result<SignerKey, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| NoteError::BadKey(format!("no randomness from the OS: {e}")))?;
        SignerKey::from_seed(name, seed)
    }

    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SignerKey, NoteError> {
        let key = SigningKey::from_bytes(&seed);
        let v = VerifierKey::new(name, key.verifying_key())?;
        Ok(SignerKey {
            name: v.name,
            id: v.id,
            key,
        })
    }

    /// Parse `PRIVATE+KEY+NAME+HHHHHHHH+BASE64` (whitespace around ignored).
    pub fn parse(text: &str) -> Result<SignerKey, NoteError> {
        let bad = |why: &str| NoteError::BadKey(format!("signer key {why}"));
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash16), Some(key64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is not PRIVATE+KEY+NAME+KEYID+KEY"));
        };
        let id = parse_id(hash16).ok_or_else(|| bad("has a bad key id (8 hex digits)"))?;
        let raw = b64().decode(key64).map_err(|_| bad("is not base64"))?;
        let Some((&ALG_ED25519, seed)) = raw.split_first() else {
            return Err(bad("is not an Ed25519 key (type byte 0x01)"));
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("does not hold a 32-byte seed"))?;
        let s = SignerKey::from_seed(name, seed)?;
        if s.id != id {
            return Err(bad("id does not match its name and key"));
        }
        Ok(s)
    }

    /// The secret text form (write it only to a 0600 file).
    pub fn to_secret_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            b64().encode(raw)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Sign `text` (which must end in a newline and hold no blank line or
    /// control character): the whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            b64().encode(raw)
        ))
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({}+{:08x}, secret)", self.name, self.id)
    }
}

/// What a note's text may hold: valid UTF-8 (a `&str`), no control
/// character but newline, a final newline, and no blank line (which would
/// end the text early for a reader).
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the text does not end with a newline".into(),
        ));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed("the text holds an empty line".into()));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed(
            "the text holds a control character".into(),
        ));
    }
    Ok(())
}

/// One signature line: the key name, the key id, the signature bytes.
pub type SignatureLine<'a> = (&'a str, u32, Vec<u8>);

/// Split a signed note into its text (with its final newline) and its
/// signature lines, checking the shape as Go's `note.Open` does.
pub fn split(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    let bad = |why: &str| NoteError::Malformed(why.to_string());
    if note.len() > MAX_NOTE_BYTES {
        return Err(bad("longer than 64 KiB"));
    }
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(bad("holds a control character"));
    }
    let at = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..at + 1], &note[at + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(bad("the signature lines do not end with a newline"));
    }
    let mut out = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        let line = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("a signature line does not start with an em dash and a space"))?;
        let (name, sig64) = line.split_once(' ').unwrap_or((line, ""));
        let raw = b64()
            .decode(sig64)
            .map_err(|_| bad("a signature is not base64"))?;
        if !is_valid_name(name) || raw.len() < 5 {
            return Err(bad("a signature line is malformed"));
        }
        if out.len() == MAX_SIGNATURES {
            return Err(bad("more than 100 signatures"));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        out.push((name, id, raw[4..].to_vec()));
    }
    Ok((text, out))
}

/// Check that `note` is signed by `key`; its text. Signatures by other
/// keys (witnesses, an older key) are ignored, as the spec requires.
pub fn open<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, NoteError> {
    let (text, sigs) = split(note)?;
    let mine = sigs
        .iter()
        .find(|(name, id, _)| *name == key.name && *id == key.id);
    match mine {
        None => Err(NoteError::NotSigned {
            name: key.name.clone(),
            id: key.id,
        }),
        Some((_, _, sig)) if key.verify(text.as_bytes(), sig) => Ok(text),
        Some(_) => Err(NoteError::BadSignature {
            name: key.name.clone(),
            id: key.id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SignerKey {
        SignerKey::from_seed("example.com/log", [7u8; 32]).unwrap()
    }

    #[test]
    fn keys_round_trip_through_their_text() {
        let k = key();
        let back = SignerKey::parse(&k.to_secret_text()).unwrap();
        assert_eq!(back.id(), k.id());
        assert_eq!(back.verifier(), k.verifier());
        let v = VerifierKey::parse(&k.verifier().to_string()).unwrap();
        assert_eq!(v, k.verifier());
        assert!(format!("{k:?}").contains("secret"));
        assert!(!format!("{k:?}").contains(&k.to_secret_text()[20..]));
    }

    #[test]
    fn keys_whose_base64_holds_a_plus_round_trip() {
        let mut seen_plus = 0;
        for i in 0..64u8 {
            let k = SignerKey::from_seed("example.com/log", [i; 32]).unwrap();
            let (secret, public) = (k.to_secret_text(), k.verifier().to_string());
            seen_plus += usize::from(public.matches('+').count() > 2);
            assert_eq!(SignerKey::parse(&secret).unwrap().verifier(), k.verifier());
            assert_eq!(VerifierKey::parse(&public).unwrap(), k.verifier());
        }
        assert!(
            seen_plus > 0,
            "no key text with a '+' in its base64 was tried"
        );
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let k = key();
        let vtext = k.verifier().to_string();
        let wrong_id = vtext.replacen(&format!("{:08x}", k.id()), "00000000", 1);
        assert!(VerifierKey::parse(&wrong_id).is_err());
        assert!(VerifierKey::parse("name+1234").is_err());
        assert!(VerifierKey::parse(&k.to_secret_text()).is_err());
        assert!(SignerKey::parse(&vtext).is_err());
        assert!(SignerKey::new_name_is_checked());
        assert!(VerifierKey::parse("a b+00000000+AQ==").is_err());
    }

    impl SignerKey {
        fn new_name_is_checked() -> bool {
            SignerKey::from_seed("has space", [1; 32]).is_err()
                && SignerKey::from_seed("has+plus", [1; 32]).is_err()
                && SignerKey::from_seed("", [1; 32]).is_err()
        }
    }

    #[test]
    fn a_signed_note_opens_and_any_change_is_refused() {
        let k = key();
        let note = k.sign("example.com/log\n5\nAAAA\n").unwrap();
        assert!(note.contains("\n\n\u{2014} example.com/log "));
        assert_eq!(
            open(&note, &k.verifier()).unwrap(),
            "example.com/log\n5\nAAAA\n"
        );
        let changed = note.replacen("\n5\n", "\n6\n", 1);
        assert!(matches!(
            open(&changed, &k.verifier()),
            Err(NoteError::BadSignature { .. })
        ));
        let other = SignerKey::from_seed("example.com/log", [8u8; 32]).unwrap();
        assert!(matches!(
            open(&note, &other.verifier()),
            Err(NoteError::NotSigned { .. })
        ));
        // A witness's signature beside the log's is ignored.
        let witness = SignerKey::from_seed("witness", [9u8; 32]).unwrap();
        let cosigned = format!(
            "{note}{}",
            witness
                .sign("example.com/log\n5\nAAAA\n")
                .unwrap()
                .split("\n\n")
                .nth(1)
                .unwrap()
        );
        assert!(open(&cosigned, &k.verifier()).is_ok());
        assert!(open(&cosigned, &witness.verifier()).is_ok());
        assert!(k.sign("no newline").is_err());
        assert!(k.sign("a\n\nb\n").is_err());
        assert!(k.sign("tab\there\n").is_err());
        assert!(open("text\n", &k.verifier()).is_err());
    }
}
