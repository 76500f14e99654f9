//! Checkpoint bodies (c2sp.org/tlog-checkpoint): origin, tree size, root hash, extension
//! lines, each ending in '\n'.
//!
//! Parsing is strict so that one checkpoint has exactly one text: the size is canonical
//! decimal, the root is padded standard base64 of exactly 32 bytes, and no line is empty.

use crate::merkle::Hash;

use super::{Note, NoteError};

/// The signed statement of a log: "the tree of `size` leaves under `origin` has `root`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Opaque extra lines after the root, each non-empty (use is NOT RECOMMENDED).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n` then one line per extension.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for ext in &self.extensions {
            text.push_str(ext);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint note text (c2sp.org/tlog-checkpoint §Note text).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::MalformedCheckpoint(
                "text does not end with a newline",
            ))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::MalformedCheckpoint(
                "fewer than three lines (origin, size, root)",
            ));
        };
        if origin.is_empty() {
            return Err(NoteError::MalformedCheckpoint("origin is empty"));
        }
        let size = parse_canonical_u64(size).ok_or(NoteError::MalformedCheckpoint(
            "tree size is not a decimal number without leading zeros",
        ))?;
        let root = Hash::from_base64(root)
            .map_err(|_| NoteError::MalformedCheckpoint("root hash is not base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::MalformedCheckpoint("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The unsigned note of this checkpoint, checking that its text parses back to the
    /// same checkpoint (no newline or control character in a field, no empty line).
    pub fn to_note(&self) -> Result<Note, NoteError> {
        let text = self.to_text();
        let note = Note::new(&text)?;
        if Checkpoint::parse(&text)? != *self {
            return Err(NoteError::MalformedCheckpoint(
                "a field contains a newline and would not parse back",
            ));
        }
        Ok(note)
    }

    /// Parses the text of a (signed) note as a checkpoint.
    pub fn from_note(note: &Note) -> Result<Checkpoint, NoteError> {
        Checkpoint::parse(note.text())
    }
}

/// ASCII digits, no sign, no leading zero except "0" itself, fits in u64.
fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "example.com/log".into(),
            size: 8,
            root: Hash::from_base64(ROOT).unwrap(),
            extensions: vec![],
        }
    }

    #[test]
    fn format_and_parse() {
        let text = format!("example.com/log\n8\n{ROOT}\n");
        assert_eq!(checkpoint().to_text(), text);
        assert_eq!(Checkpoint::parse(&text), Ok(checkpoint()));
        let mut with_ext = checkpoint();
        with_ext.extensions = vec!["ext one".into(), "— two".into()];
        let text = with_ext.to_text();
        assert!(text.ends_with("\next one\n— two\n"));
        assert_eq!(Checkpoint::parse(&text), Ok(with_ext));
    }

    #[test]
    fn sizes_must_be_canonical_decimal() {
        for (size, ok) in [
            ("0", Some(0)),
            ("123456789012", Some(123456789012)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("08", None),
            ("00", None),
            ("+8", None),
            ("-0", None),
            (" 8", None),
            ("8 ", None),
            ("", None),
            ("0x8", None),
            ("８", None),
        ] {
            let text = format!("o\n{size}\n{ROOT}\n");
            assert_eq!(
                Checkpoint::parse(&text).ok().map(|c| c.size),
                ok,
                "{size:?}"
            );
        }
    }

    #[test]
    fn malformed_checkpoints_are_rejected() {
        for bad in [
            format!("example.com/log\n8\n{ROOT}"),
            "example.com/log\n8\n".to_string(),
            format!("\n8\n{ROOT}\n"),
            format!("o\n8\n{}\n", &ROOT[..ROOT.len() - 1]),
            "o\n8\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuA==\n".to_string(),
            "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyhh\n".to_string(),
            format!("o\n8\n{ROOT}\n\n"),
            format!("o\n8\n{ROOT}\next\n\n"),
            format!("o\n8\n{ROOT}\r\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn to_note_refuses_fields_that_would_not_parse_back() {
        assert!(checkpoint().to_note().is_ok());
        let mut c = checkpoint();
        c.origin = "a\nb".into();
        assert!(c.to_note().is_err());
        let mut c = checkpoint();
        c.extensions = vec![String::new()];
        assert!(c.to_note().is_err());
        let mut c = checkpoint();
        c.origin = String::new();
        assert!(c.to_note().is_err());
    }
}
