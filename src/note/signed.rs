//! The signed-note container (c2sp.org/signed-note): text, a blank line, signature lines.
//!
//! Parsing is strict and bounded: at most [`MAX_NOTE_SIZE`] bytes and
//! [`MAX_SIGNATURES`] signature lines, valid UTF-8 without control characters other than
//! newline, well-formed signature lines, and at most one signature per (key name, key ID).
//! A parsed note formats back to exactly the bytes it was parsed from.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{NoteError, NoteSigner, NoteVerifier, check_key_name, is_valid_key_name};

/// Largest note accepted, in bytes: 64 KiB.
///
/// A checkpoint text is a few hundred bytes and an Ed25519 or ECDSA signature line about
/// 150, so this leaves room for the text plus all [`MAX_SIGNATURES`] classical
/// signatures, or a dozen post-quantum (ML-DSA-44, ~3.3 KB per line) cosignatures, while
/// bounding what an untrusted peer can make us buffer and scan.
pub const MAX_NOTE_SIZE: usize = 64 * 1024;

/// Most signature lines accepted on one note. The spec requires accepting at least 16;
/// 100 is the limit of the Go reference implementation (golang.org/x/mod/sumdb/note).
pub const MAX_SIGNATURES: usize = 100;

/// "— " (U+2014 EM DASH, space) starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// One signature line: `— <name> base64(key_id || signature)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature proper, without the 4-byte key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in a note, including the final newline.
    pub fn to_line(&self) -> String {
        let mut payload = Vec::with_capacity(4 + self.signature.len());
        payload.extend_from_slice(&self.key_id.to_be_bytes());
        payload.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(payload))
    }

    /// Parses one signature line, without its final newline. `line_no` (1-based) only
    /// labels errors.
    fn parse_line(line: &str, line_no: usize) -> Result<NoteSignature, NoteError> {
        let malformed = |reason| NoteError::MalformedSignatureLine {
            line: line_no,
            reason,
        };
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(malformed("does not start with an em dash and a space"))?;
        // The name ends at the first space; the rest must be one base64 token.
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(malformed("no space between key name and signature"))?;
        if !is_valid_key_name(name) {
            return Err(malformed("invalid key name"));
        }
        let payload = STANDARD
            .decode(b64)
            .map_err(|_| malformed("signature is not padded standard base64"))?;
        // A key ID and at least one byte of signature.
        if payload.len() < 5 {
            return Err(malformed("signature is shorter than 5 bytes"));
        }
        let (id, signature) = payload.split_at(4);
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
            signature: signature.to_vec(),
        })
    }

    /// Parses a block of signature lines, each ending in '\n' (the part of a note after
    /// the blank line, or a witness's add-checkpoint response body). Duplicates of a
    /// (name, key ID) are kept; [`Note::parse`] rejects them.
    pub fn parse_lines(block: &[u8]) -> Result<Vec<NoteSignature>, NoteError> {
        if block.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size: block.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let block = check_note_chars(block)?;
        parse_sig_block(block)
    }

    fn encoded_len(&self) -> usize {
        SIG_PREFIX.len() + self.name.len() + 1 + (4 + self.signature.len()).div_ceil(3) * 4 + 1
    }
}

/// A signed note: validated text (ending in '\n') and its signatures, at most one per
/// (key name, key ID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// An unsigned note over `text`, which must end in '\n', contain no control character
    /// other than '\n', and leave room for signatures within [`MAX_NOTE_SIZE`].
    pub fn new(text: &str) -> Result<Note, NoteError> {
        // +1 for the blank line before the signatures.
        if text.len() + 1 > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size: text.len() + 1,
                max: MAX_NOTE_SIZE,
            });
        }
        check_note_chars(text.as_bytes())?;
        if !text.ends_with('\n') {
            return Err(NoteError::MissingFinalNewline);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note, strictly (c2sp.org/signed-note §Format). Signatures are not
    /// verified here; see [`Note::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size: bytes.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let msg = check_note_chars(bytes)?;
        // The text ends at the last blank line; it keeps its own final newline.
        let split = msg.rfind("\n\n").ok_or(NoteError::MissingSignatures)?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() {
            return Err(NoteError::MissingSignatures);
        }
        let signatures = parse_sig_block(sigs)?;
        for (i, s) in signatures.iter().enumerate() {
            if signatures[..i]
                .iter()
                .any(|t| t.name == s.name && t.key_id == s.key_id)
            {
                return Err(NoteError::DuplicateSignature {
                    name: s.name.clone(),
                    key_id: s.key_id,
                });
            }
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds `s`, replacing any signature with the same (name, key ID) (e.g. a witness's
    /// fresher cosignature). Unchecked: a signature with an invalid name or an empty
    /// signature makes [`Note::to_bytes`] emit a note that does not parse. Use
    /// [`Note::try_add_signature`] for signatures from outside.
    pub fn add_signature(&mut self, s: NoteSignature) {
        match self
            .signatures
            .iter_mut()
            .find(|t| t.name == s.name && t.key_id == s.key_id)
        {
            Some(existing) => *existing = s,
            None => self.signatures.push(s),
        }
    }

    /// [`Note::add_signature`], after checking that the result still formats to a note
    /// [`Note::parse`] accepts: valid key name, non-empty signature, within
    /// [`MAX_SIGNATURES`] and [`MAX_NOTE_SIZE`].
    pub fn try_add_signature(&mut self, s: NoteSignature) -> Result<(), NoteError> {
        check_key_name(&s.name)?;
        if s.signature.is_empty() {
            return Err(NoteError::EmptySignature {
                name: s.name,
                key_id: s.key_id,
            });
        }
        let replaced = self
            .signatures
            .iter()
            .find(|t| t.name == s.name && t.key_id == s.key_id);
        let count = self.signatures.len() + usize::from(replaced.is_none());
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count,
                max: MAX_SIGNATURES,
            });
        }
        let size = self.encoded_len() + s.encoded_len() - replaced.map_or(0, |t| t.encoded_len());
        if size > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size,
                max: MAX_NOTE_SIZE,
            });
        }
        self.add_signature(s);
        Ok(())
    }

    /// Signs the text with `signer` and adds the signature (replacing an older one by the
    /// same key).
    pub fn sign(&mut self, signer: &dyn NoteSigner) -> Result<(), NoteError> {
        check_key_name(signer.name())?;
        let signature = signer.sign(self.text.as_bytes())?;
        self.try_add_signature(NoteSignature {
            name: signer.name().to_owned(),
            key_id: signer.key_id(),
            signature,
        })
    }

    /// Text, blank line, signature lines. A note without signatures formats as text and
    /// blank line only, which is not a valid signed note.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.encoded_len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out.into_bytes()
    }

    /// Verifies the note against known keys (c2sp.org/signed-note §Verification):
    /// signatures whose (name, key ID) matches no verifier are ignored; a signature whose
    /// (name, key ID) matches a verifier but does not verify rejects the whole note; if no
    /// signature verifies, the note is rejected. Returns the verified signatures, in note
    /// order.
    pub fn verify(&self, verifiers: &[&dyn NoteVerifier]) -> Result<Vec<NoteSignature>, NoteError> {
        let mut verified = Vec::new();
        for s in &self.signatures {
            let Some(v) = verifiers
                .iter()
                .find(|v| v.name() == s.name && v.key_id() == s.key_id)
            else {
                continue;
            };
            if !v.verify(self.text.as_bytes(), &s.signature) {
                return Err(NoteError::InvalidSignature {
                    name: s.name.clone(),
                    key_id: s.key_id,
                });
            }
            verified.push(s.clone());
        }
        if verified.is_empty() {
            return Err(NoteError::NoVerifiedSignature);
        }
        Ok(verified)
    }

    fn encoded_len(&self) -> usize {
        self.text.len()
            + 1
            + self
                .signatures
                .iter()
                .map(NoteSignature::encoded_len)
                .sum::<usize>()
    }
}

/// UTF-8 with no ASCII control character other than '\n' (c2sp.org/signed-note §Format).
fn check_note_chars(bytes: &[u8]) -> Result<&str, NoteError> {
    let s = std::str::from_utf8(bytes).map_err(|_| NoteError::InvalidUtf8)?;
    // Control characters are ASCII, so a byte scan finds exactly the offending chars.
    if let Some(offset) = s.bytes().position(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter {
            code: u32::from(bytes[offset]),
            offset,
        });
    }
    Ok(s)
}

/// Signature lines, each ending in '\n'; at most [`MAX_SIGNATURES`].
fn parse_sig_block(block: &str) -> Result<Vec<NoteSignature>, NoteError> {
    let Some(body) = block.strip_suffix('\n') else {
        return Err(NoteError::MalformedSignatureLine {
            line: block.split('\n').count(),
            reason: "does not end with a newline",
        });
    };
    let count = body.split('\n').count();
    if count > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            count,
            max: MAX_SIGNATURES,
        });
    }
    body.split('\n')
        .enumerate()
        .map(|(i, line)| NoteSignature::parse_line(line, i + 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";

    fn sig(name: &str, key_id: u32, len: usize) -> NoteSignature {
        NoteSignature {
            name: name.to_owned(),
            key_id,
            signature: (0..len).map(|i| i as u8).collect(),
        }
    }

    fn note_with(sigs: &[NoteSignature]) -> Vec<u8> {
        let mut n = Note::new(TEXT).unwrap();
        for s in sigs {
            n.add_signature(s.clone());
        }
        n.to_bytes()
    }

    #[test]
    fn parse_and_format_round_trip() {
        let bytes = note_with(&[sig("a", 1, 64), sig("b", 2, 70)]);
        let note = Note::parse(&bytes).unwrap();
        assert_eq!(note.text(), TEXT);
        assert_eq!(note.signatures(), &[sig("a", 1, 64), sig("b", 2, 70)]);
        assert_eq!(note.to_bytes(), bytes);
    }

    #[test]
    fn text_may_contain_blank_lines_split_is_at_the_last_one() {
        let text = "a\n\nb\n";
        let mut n = Note::new(text).unwrap();
        n.add_signature(sig("k", 7, 10));
        let parsed = Note::parse(&n.to_bytes()).unwrap();
        assert_eq!(parsed.text(), text);
        // A text that itself ends with a blank line also survives.
        let mut n = Note::new("a\n\n").unwrap();
        n.add_signature(sig("k", 7, 10));
        assert_eq!(Note::parse(&n.to_bytes()).unwrap().text(), "a\n\n");
    }

    #[test]
    fn text_rules() {
        assert_eq!(Note::new("no newline"), Err(NoteError::MissingFinalNewline));
        assert_eq!(Note::new(""), Err(NoteError::MissingFinalNewline));
        assert!(matches!(
            Note::new("a\rb\n"),
            Err(NoteError::ControlCharacter {
                code: 0x0d,
                offset: 1
            })
        ));
        assert!(matches!(
            Note::new("a\tb\n"),
            Err(NoteError::ControlCharacter { code: 0x09, .. })
        ));
        assert!(matches!(
            Note::new(&"x".repeat(MAX_NOTE_SIZE)),
            Err(NoteError::TooLarge { .. })
        ));
        assert!(Note::new("ünïcødé — fine\n").is_ok());
    }

    #[test]
    fn malformed_signature_lines_are_rejected() {
        let good = STANDARD.encode([0u8, 0, 0, 1, 9]);
        for (block, why) in [
            (format!("- a {good}\n"), "hyphen instead of em dash"),
            (format!("—a {good}\n"), "no space after dash"),
            ("— a\n".to_string(), "no signature"),
            ("— a \n".to_string(), "empty signature"),
            (format!("— a {good} extra\n"), "trailing token"),
            (format!("— a  {good}\n"), "double space"),
            (format!("— a+b {good}\n"), "plus in name"),
            (format!("—  {good}\n"), "empty name"),
            ("— a AAAAAA==\n".to_string(), "4-byte payload"),
            ("— a AAAAAQk\n".to_string(), "unpadded base64"),
            (format!("— a {good}\n\n"), "empty line after signatures"),
        ] {
            let mut bytes = format!("{TEXT}\n").into_bytes();
            bytes.extend_from_slice(block.as_bytes());
            assert!(Note::parse(&bytes).is_err(), "{why} accepted");
        }
    }

    #[test]
    fn structure_errors() {
        assert_eq!(
            Note::parse(TEXT.as_bytes()),
            Err(NoteError::MissingSignatures)
        );
        assert_eq!(
            Note::parse(format!("{TEXT}\n").as_bytes()),
            Err(NoteError::MissingSignatures)
        );
        let mut no_final_newline = note_with(&[sig("a", 1, 64)]);
        no_final_newline.pop();
        assert!(matches!(
            Note::parse(&no_final_newline),
            Err(NoteError::MalformedSignatureLine { line: 1, .. })
        ));
        assert_eq!(Note::parse(b"\xff\n\n"), Err(NoteError::InvalidUtf8));
    }

    #[test]
    fn signature_count_limit() {
        let sigs: Vec<_> = (0..MAX_SIGNATURES as u32)
            .map(|i| sig("a", i, 64))
            .collect();
        let bytes = note_with(&sigs);
        assert_eq!(
            Note::parse(&bytes).unwrap().signatures().len(),
            MAX_SIGNATURES
        );
        let mut over = bytes.clone();
        over.extend_from_slice(sig("a", 1000, 64).to_line().as_bytes());
        assert_eq!(
            Note::parse(&over),
            Err(NoteError::TooManySignatures {
                count: MAX_SIGNATURES + 1,
                max: MAX_SIGNATURES
            })
        );
        let mut n = Note::parse(&bytes).unwrap();
        assert!(matches!(
            n.try_add_signature(sig("a", 1000, 64)),
            Err(NoteError::TooManySignatures { .. })
        ));
        // Replacing an existing key's signature does not count as one more.
        n.try_add_signature(sig("a", 5, 10)).unwrap();
        assert_eq!(n.signatures()[5], sig("a", 5, 10));
    }

    #[test]
    fn size_limit() {
        let big = sig("a", 1, MAX_NOTE_SIZE);
        let mut bytes = format!("{TEXT}\n").into_bytes();
        bytes.extend_from_slice(big.to_line().as_bytes());
        assert!(matches!(
            Note::parse(&bytes),
            Err(NoteError::TooLarge { .. })
        ));
        let mut n = Note::new(TEXT).unwrap();
        assert!(matches!(
            n.try_add_signature(big),
            Err(NoteError::TooLarge { .. })
        ));
        // encoded_len is exact: a signature filling the note to the byte is accepted.
        let mut n = Note::new(TEXT).unwrap();
        // Everything but the base64 of the 4-byte key ID (8 chars) of an empty signature.
        let base = n.encoded_len() + sig("a", 1, 0).encoded_len() - 8;
        let room = (MAX_NOTE_SIZE - base) / 4 * 3 - 4;
        assert!(matches!(
            n.clone().try_add_signature(sig("a", 1, room + 1)),
            Err(NoteError::TooLarge { .. })
        ));
        n.try_add_signature(sig("a", 1, room)).unwrap();
        let bytes = n.to_bytes();
        assert_eq!(bytes.len(), n.encoded_len());
        assert!(bytes.len() <= MAX_NOTE_SIZE && bytes.len() > MAX_NOTE_SIZE - 4);
        assert_eq!(Note::parse(&bytes).unwrap(), n);
    }

    #[test]
    fn duplicate_key_signatures_are_rejected() {
        let mut bytes = note_with(&[sig("a", 1, 64)]);
        bytes.extend_from_slice(sig("a", 1, 64).to_line().as_bytes());
        assert_eq!(
            Note::parse(&bytes),
            Err(NoteError::DuplicateSignature {
                name: "a".into(),
                key_id: 1
            })
        );
        // Same key ID under another name is another key.
        let bytes = note_with(&[sig("a", 1, 64), sig("b", 1, 64)]);
        assert_eq!(Note::parse(&bytes).unwrap().signatures().len(), 2);
    }

    #[test]
    fn try_add_signature_checks_names() {
        let mut n = Note::new(TEXT).unwrap();
        assert!(matches!(
            n.try_add_signature(sig("Bad Name", 1, 64)),
            Err(NoteError::InvalidKeyName(_))
        ));
        assert!(matches!(
            n.try_add_signature(sig("good", 1, 0)),
            Err(NoteError::EmptySignature { .. })
        ));
        assert!(n.signatures().is_empty());
    }

    #[test]
    fn parse_lines_reads_a_witness_response() {
        let block = format!(
            "{}{}",
            sig("w1", 1, 72).to_line(),
            sig("w2", 2, 72).to_line()
        );
        let sigs = NoteSignature::parse_lines(block.as_bytes()).unwrap();
        assert_eq!(sigs, vec![sig("w1", 1, 72), sig("w2", 2, 72)]);
        assert!(NoteSignature::parse_lines(b"").is_err());
        assert!(NoteSignature::parse_lines(b"\xe2\x80\x94 w AAAAAQk=\r\n").is_err());
    }

    mod properties {
        use super::*;
        use crate::note::{Checkpoint, parse_verifier_key};
        use proptest::prelude::*;

        /// Note text: lines of printable characters (some non-ASCII, some '—'), each
        /// ending in '\n', possibly empty.
        fn text() -> impl Strategy<Value = String> {
            prop::collection::vec("[a-z0-9 +/=—é]{0,20}", 1..6)
                .prop_map(|lines| lines.iter().map(|l| format!("{l}\n")).collect())
        }

        fn signature() -> impl Strategy<Value = NoteSignature> {
            (
                "[a-z.]{1,8}",
                any::<u32>(),
                prop::collection::vec(any::<u8>(), 1..80),
            )
                .prop_map(|(name, key_id, signature)| NoteSignature {
                    name,
                    key_id,
                    signature,
                })
        }

        proptest! {
            #[test]
            fn formatted_notes_parse_back(text in text(), sigs in prop::collection::vec(signature(), 1..8)) {
                let mut note = Note::new(&text).unwrap();
                for s in sigs {
                    note.try_add_signature(s).unwrap();
                }
                let bytes = note.to_bytes();
                prop_assert_eq!(bytes.len(), note.encoded_len());
                prop_assert_eq!(Note::parse(&bytes).unwrap(), note);
            }

            #[test]
            fn parsers_never_panic_and_accepted_notes_format_identically(
                bytes in prop::collection::vec(any::<u8>(), 0..300)
            ) {
                if let Ok(note) = Note::parse(&bytes) {
                    prop_assert_eq!(note.to_bytes(), bytes.clone());
                }
                if let Ok(s) = std::str::from_utf8(&bytes) {
                    if let Ok(cp) = Checkpoint::parse(s) {
                        prop_assert_eq!(cp.to_text(), s);
                    }
                    let _ = parse_verifier_key(s);
                }
            }

            #[test]
            fn mutated_valid_notes_never_panic(
                text in text(),
                sig in signature(),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let mut note = Note::new(&text).unwrap();
                note.try_add_signature(sig).unwrap();
                let mut bytes = note.to_bytes();
                let i = at.index(bytes.len());
                bytes[i] = byte;
                if let Ok(parsed) = Note::parse(&bytes) {
                    prop_assert_eq!(parsed.to_bytes(), bytes);
                }
            }
        }
    }
}
