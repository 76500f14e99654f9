//! The body of a c2sp.org/tlog-witness `add-checkpoint` request, parsed and
//! formatted. Pure: bytes in, values out.
//!
//! ```text
//! old <size>\n                 canonical decimal, "0" when the client knows no state
//! <base64 hash>\n              zero to 63 consistency-proof hashes
//! \n                           an empty line
//! <signed checkpoint note>     the rest of the body
//! ```
//!
//! Parsing is strict so that a request has one reading: the size has no sign,
//! no leading zero and fits in a u64; each proof line is padded standard
//! base64 of exactly 32 bytes; there are at most [`MAX_PROOF_LINES`]; and the
//! note parses as a signed note (c2sp.org/signed-note) whose text is a
//! checkpoint (c2sp.org/tlog-checkpoint).

use crate::merkle::Hash;
use crate::note::{Checkpoint, Note, NoteError};

/// Most consistency-proof lines a request may carry (c2sp.org/tlog-witness:
/// a client MUST NOT send more than 63; a tree of 2^64 leaves needs no more).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest request body a witness reads: 16 KiB, as transparency-dev/witness.
/// 63 proof lines are 2.8 KB; the rest is room for the note and its signatures.
pub const MAX_REQUEST_BODY: usize = 16 * 1024;

/// A parsed `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the latest checkpoint the client believes the witness cosigned.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub note: Note,
    /// The checkpoint the note's text states.
    pub checkpoint: Checkpoint,
}

/// Why a request body is malformed. Every variant is a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is larger than [`MAX_REQUEST_BODY`].
    #[error("request body is {0} bytes, more than the {MAX_REQUEST_BODY}-byte limit")]
    TooLarge(usize),
    /// The body is not UTF-8.
    #[error("request body is not UTF-8")]
    NotUtf8,
    /// The first line is not `old <canonical decimal>`.
    #[error("first line must be \"old <size>\" with a decimal size without leading zeros")]
    BadOldLine,
    /// A proof line is not padded base64 of 32 bytes.
    #[error("proof line {0} is not padded standard base64 of a 32-byte hash")]
    BadProofLine(usize),
    /// More than [`MAX_PROOF_LINES`] proof lines.
    #[error("more than {MAX_PROOF_LINES} consistency proof lines")]
    TooManyProofLines,
    /// The empty line between the proof and the note is missing.
    #[error("missing the empty line between the proof and the checkpoint")]
    MissingSeparator,
    /// The note is not a signed note.
    #[error("checkpoint is not a signed note: {0}")]
    BadNote(NoteError),
    /// The note's text is not a checkpoint.
    #[error("checkpoint text is malformed: {0}")]
    BadCheckpoint(NoteError),
}

/// ASCII digits, no sign, no leading zero except "0", fits in a u64.
fn canonical_u64(s: &str) -> Option<u64> {
    let digits_only = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

impl AddCheckpoint {
    /// Parses a request body strictly (see the module comment).
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, RequestError> {
        if body.len() > MAX_REQUEST_BODY {
            return Err(RequestError::TooLarge(body.len()));
        }
        let text = std::str::from_utf8(body).map_err(|_| RequestError::NotUtf8)?;
        let (first, mut rest) = text.split_once('\n').ok_or(RequestError::BadOldLine)?;
        let old_size = first
            .strip_prefix("old ")
            .and_then(canonical_u64)
            .ok_or(RequestError::BadOldLine)?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or(RequestError::MissingSeparator)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(RequestError::TooManyProofLines);
            }
            let hash =
                Hash::from_base64(line).map_err(|_| RequestError::BadProofLine(proof.len() + 1))?;
            proof.push(hash);
        }
        let note = Note::parse(rest.as_bytes()).map_err(RequestError::BadNote)?;
        let checkpoint = Checkpoint::parse(note.text()).map_err(RequestError::BadCheckpoint)?;
        Ok(AddCheckpoint {
            old_size,
            proof,
            note,
            checkpoint,
        })
    }

    /// Formats a request body: the inverse of [`AddCheckpoint::parse`].
    pub fn format(old_size: u64, proof: &[Hash], signed_note: &[u8]) -> Vec<u8> {
        let mut out = format!("old {old_size}\n").into_bytes();
        for h in proof {
            out.extend_from_slice(h.to_base64().as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(signed_note);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Ed25519Signer, NoteSigner};

    fn note(size: u64) -> Vec<u8> {
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size,
            root: crate::merkle::leaf_hash(b"x"),
            extensions: vec![],
        };
        let signer = Ed25519Signer::new(
            "example.com/log",
            ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        )
        .unwrap();
        let mut n = cp.to_note().unwrap();
        n.sign(&signer as &dyn NoteSigner).unwrap();
        n.to_bytes()
    }

    fn hash(i: u8) -> Hash {
        crate::merkle::leaf_hash(&[i])
    }

    #[test]
    fn a_request_round_trips() {
        let proof = vec![hash(1), hash(2), hash(3)];
        let body = AddCheckpoint::format(5, &proof, &note(8));
        let req = AddCheckpoint::parse(&body).unwrap();
        assert_eq!(req.old_size, 5);
        assert_eq!(req.proof, proof);
        assert_eq!(req.checkpoint.size, 8);
        assert_eq!(req.note.to_bytes(), note(8));
        let empty = AddCheckpoint::parse(&AddCheckpoint::format(0, &[], &note(8))).unwrap();
        assert_eq!((empty.old_size, empty.proof.len()), (0, 0));
    }

    #[test]
    fn the_spec_example_shape_parses() {
        let body = format!(
            "old 20852014\n{}\n{}\n\n{}",
            "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=",
            "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=",
            String::from_utf8(note(20852163)).unwrap()
        );
        let req = AddCheckpoint::parse(body.as_bytes()).unwrap();
        assert_eq!(req.old_size, 20852014);
        assert_eq!(req.proof.len(), 2);
    }

    #[test]
    fn the_old_line_is_canonical_decimal() {
        let n = String::from_utf8(note(8)).unwrap();
        for bad in [
            "old 05",
            "old +5",
            "old -5",
            "old  5",
            "old 5 ",
            "Old 5",
            "old",
            "old ",
            "old 0x5",
            "old 1e3",
            "5",
            "old 18446744073709551616",
            "old ５",
        ] {
            let body = format!("{bad}\n\n{n}");
            assert_eq!(
                AddCheckpoint::parse(body.as_bytes()),
                Err(RequestError::BadOldLine),
                "{bad:?}"
            );
        }
        let max = format!("old 18446744073709551615\n\n{n}");
        assert_eq!(
            AddCheckpoint::parse(max.as_bytes()).unwrap().old_size,
            u64::MAX
        );
        assert_eq!(
            AddCheckpoint::parse(b"old 5"),
            Err(RequestError::BadOldLine)
        );
    }

    #[test]
    fn proof_lines_are_padded_base64_of_32_bytes() {
        let n = String::from_utf8(note(8)).unwrap();
        let good = hash(1).to_base64();
        for bad in [
            good.trim_end_matches('=').to_string(),   // unpadded
            good.replace('+', "-").replace('/', "_"), // URL alphabet (if any)
            format!("{good} "),                       // trailing space
            base64_of(&[0u8; 31]),                    // 31 bytes
            base64_of(&[0u8; 33]),                    // 33 bytes
            "not base64!".to_string(),
        ] {
            if bad == good {
                continue;
            }
            let body = format!("old 1\n{good}\n{bad}\n\n{n}");
            assert_eq!(
                AddCheckpoint::parse(body.as_bytes()),
                Err(RequestError::BadProofLine(2)),
                "{bad:?}"
            );
        }
    }

    fn base64_of(b: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn at_most_63_proof_lines() {
        let proof: Vec<Hash> = (0..63).map(hash).collect();
        let ok = AddCheckpoint::format(1, &proof, &note(8));
        assert_eq!(AddCheckpoint::parse(&ok).unwrap().proof.len(), 63);
        let proof: Vec<Hash> = (0..64).map(hash).collect();
        let too_many = AddCheckpoint::format(1, &proof, &note(8));
        assert_eq!(
            AddCheckpoint::parse(&too_many),
            Err(RequestError::TooManyProofLines)
        );
    }

    #[test]
    fn the_separator_and_the_note_are_required() {
        assert_eq!(
            AddCheckpoint::parse(b"old 0\n"),
            Err(RequestError::MissingSeparator)
        );
        let h = hash(1).to_base64();
        assert_eq!(
            AddCheckpoint::parse(format!("old 1\n{h}\n").as_bytes()),
            Err(RequestError::MissingSeparator)
        );
        // The note directly after the old line: its origin line is not base64.
        let n = String::from_utf8(note(8)).unwrap();
        assert_eq!(
            AddCheckpoint::parse(format!("old 0\n{n}").as_bytes()),
            Err(RequestError::BadProofLine(1))
        );
        assert!(matches!(
            AddCheckpoint::parse(b"old 0\n\n"),
            Err(RequestError::BadNote(_))
        ));
        // An unsigned note.
        assert!(matches!(
            AddCheckpoint::parse(
                b"old 0\n\nexample.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
            ),
            Err(RequestError::BadNote(_))
        ));
        // Two empty lines: the second starts the note text, whose origin
        // line is then empty.
        assert!(matches!(
            AddCheckpoint::parse(format!("old 0\n\n\n{n}").as_bytes()),
            Err(RequestError::BadCheckpoint(_))
        ));
    }

    #[test]
    fn the_note_text_must_be_a_checkpoint() {
        let signer = Ed25519Signer::new(
            "example.com/log",
            ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        )
        .unwrap();
        let mut n = Note::new("example.com/log\n08\nnot a hash\n").unwrap();
        n.sign(&signer as &dyn NoteSigner).unwrap();
        let body = AddCheckpoint::format(0, &[], &n.to_bytes());
        assert!(matches!(
            AddCheckpoint::parse(&body),
            Err(RequestError::BadCheckpoint(_))
        ));
    }

    #[test]
    fn bodies_that_are_too_large_or_not_utf8_are_refused() {
        let big = vec![b'a'; MAX_REQUEST_BODY + 1];
        assert_eq!(
            AddCheckpoint::parse(&big),
            Err(RequestError::TooLarge(MAX_REQUEST_BODY + 1))
        );
        assert_eq!(
            AddCheckpoint::parse(b"old 0\n\n\xff"),
            Err(RequestError::NotUtf8)
        );
        let n = String::from_utf8(note(8)).unwrap();
        assert_eq!(
            AddCheckpoint::parse(format!("old 0\r\n\n{n}").as_bytes()),
            Err(RequestError::BadOldLine)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = AddCheckpoint::parse(&body);
            let mut prefixed = b"old 3\n".to_vec();
            prefixed.extend_from_slice(&body);
            let _ = AddCheckpoint::parse(&prefixed);
        }

        #[test]
        fn formatted_requests_round_trip(old in proptest::prelude::any::<u64>(), n in 0usize..=63, size in 0u64..1000) {
            let proof: Vec<Hash> = (0..n).map(|i| hash(i as u8)).collect();
            let body = AddCheckpoint::format(old, &proof, &note(size));
            let req = AddCheckpoint::parse(&body).unwrap();
            proptest::prop_assert_eq!(req.old_size, old);
            proptest::prop_assert_eq!(req.proof, proof);
            proptest::prop_assert_eq!(req.checkpoint.size, size);
        }
    }
}
