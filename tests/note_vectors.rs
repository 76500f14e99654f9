//! Published signed-note, checkpoint and cosignature vectors (C2SP signed-note,
//! golang.org/x/mod/sumdb/note, transparency-dev/formats), end-to-end vectors derived
//! from them, and the negative cases around them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use veritrail::merkle::Hash;
use veritrail::note::{
    Checkpoint, CosignatureSigner, CosignatureVerifier, EcdsaSigner, EcdsaVerifier, Ed25519Signer,
    MAX_NOTE_SIZE, MAX_SIGNATURES, Note, NoteError, NoteSignature, NoteSigner, NoteVerifier,
    cosignature_message, parse_verifier_key,
};

// --- ECDSA (type 0x02), transparency-dev/formats note_verifier_test.go -------------------

const REKOR_VKEY: &str = "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=";
const REKOR_NOTE: &str = "Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n— rekor.sigstore.dev wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=\n";
const PIXEL_VKEY: &str = "pixel6_transparency_log+91c16e30+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABN+4x0Jk1yTwvLFI9A4NDdGZcX0aiWVdWM5XJVy0M4VWD3AvyW5Q6Hs9A0mcDkpUoYgn+KKPNzFC0H3nN3q6JQ8=";
const PIXEL_NOTE: &str = "DEFAULT\n10\nbsWRucJU5xJPHb5eBdOm6+DM+VelCZBuvtI3sHERJ9Y=\n\n— pixel6_transparency_log kcFuMDBFAiEAhqMAP8P6qf6QxtUJhzMhbN+MbZ9dwfUHzGQJmffJHtoCIGD0cNe47dHWBoPwYdgBCepB06/+g5O1FmYjXl06owL4\n";

// --- Ed25519 (type 0x01), golang.org/x/mod/sumdb/note ------------------------------------

const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const PROBLEM_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_LINE: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_LINE: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

// --- C2SP signed-note example ------------------------------------------------------------

const FOO_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const FOO_NOTE: &str = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

// --- Derived end-to-end vectors (Ed25519 log + witness cosignature, ECDSA log) ------------

const LOG_VKEY: &str = "example.com/log+baa06b0f+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const LOG_SKEY: &str =
    "PRIVATE+KEY+example.com/log+baa06b0f+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const WITNESS_VKEY: &str =
    "example.com/witness+fae09774+BNdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea";
/// RFC 8032 §7.1 TEST 1 secret key.
const WITNESS_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const CHECKPOINT_TEXT: &str = "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";
const LOG_LINE: &str = "— example.com/log uqBrD8md6KH/K8nsTyCpMroEpsokvZnLjgKBwfmwqiP5VtzG9OOz0MvF+3swZXnW5cfj5dOF4rToWcwTH6a7b582ZAQ=\n";
const WITNESS_LINE: &str = "— example.com/witness +uCXdAAAAABkGFDLlQZQvuYNLvJADN+UyFpNHIJPabSJaDfcB6hIIzyFCpmLbt/5ovcLcUgILRd3novhgzKaPo7CChtHr6DfOu8xAw==\n";
const COSIGN_TIME: u64 = 1679315147;
const COSIGNED_MESSAGE_HEX: &str = "636f7369676e61747572652f76310a74696d6520313637393331353134370a6578616d706c652e636f6d2f6c6f670a380a58636e616561634757616d74565a79334164375a6f717564676a71744c306c677a2b4e77372f52675179673d0a";
/// RFC 6979 §A.2.5 P-256 private key.
const ECDSA_SCALAR: &str = "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721";
const ECDSA_VKEY: &str = "example.com/ecdsa-log+5a7a78cc+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGD+1LolWp0xyWHrdMY1bWjASbiSO2H6bOZpYi5g8p+2eQP+EAi4vJmkGunpVii8ZPLxsgwtfp9Rd6PClNRGIpk=";
const ECDSA_LINE: &str = "— example.com/ecdsa-log Wnp4zDBEAiBwBNXruDOema1yxCT8VZ9oAPMfQ4Tmr6NMyekkCrJ/egIgdPfm5ETa/hcA8qDRZgptb7P6Iz7ccMjjPA3gzadw8DE=\n";

fn vkey(s: &str) -> Box<dyn NoteVerifier> {
    parse_verifier_key(s).unwrap()
}

fn verify(note: &str, vkeys: &[&str]) -> Result<Vec<NoteSignature>, NoteError> {
    let verifiers: Vec<Box<dyn NoteVerifier>> = vkeys.iter().map(|k| vkey(k)).collect();
    let refs: Vec<&dyn NoteVerifier> = verifiers.iter().map(|v| v.as_ref()).collect();
    Note::parse(note.as_bytes())?.verify(&refs)
}

fn cosigned_checkpoint() -> String {
    format!("{CHECKPOINT_TEXT}\n{LOG_LINE}{WITNESS_LINE}")
}

fn witness_key() -> SigningKey {
    SigningKey::from_bytes(&hex::decode(WITNESS_SEED).unwrap().try_into().unwrap())
}

fn ecdsa_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&hex::decode(ECDSA_SCALAR).unwrap()).unwrap()
}

// ------------------------------------------------------------------------------------------

#[test]
fn rekor_and_pixel_ecdsa_notes_verify() {
    let v = verify(REKOR_NOTE, &[REKOR_VKEY]).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].name.as_str(), v[0].key_id),
        ("rekor.sigstore.dev", 0xc0d23d6a)
    );
    assert_eq!(v[0].signature.len(), 70);
    let v = verify(PIXEL_NOTE, &[PIXEL_VKEY]).unwrap();
    assert_eq!(v[0].key_id, 0x91c16e30);
    assert_eq!(v[0].signature.len(), 71);
    // Each key verifies only its own note.
    assert_eq!(
        verify(REKOR_NOTE, &[PIXEL_VKEY]),
        Err(NoteError::NoVerifiedSignature)
    );
    // The ECDSA verifier keys format back to themselves.
    assert_eq!(
        EcdsaVerifier::from_verifier_key(REKOR_VKEY)
            .unwrap()
            .verifier_key(),
        REKOR_VKEY
    );
}

#[test]
fn ecdsa_negative_vectors() {
    // Same key material under another name: its key ID is the same (the name is not
    // hashed for 0x02) but (name, ID) does not match the signature line, so the
    // signature is ignored and nothing verifies.
    let bananas = REKOR_VKEY.replace("rekor.sigstore.dev", "bananas.sigstore.dev");
    assert_eq!(vkey(&bananas).key_id(), 0xc0d23d6a);
    assert_eq!(
        verify(REKOR_NOTE, &[&bananas]),
        Err(NoteError::NoVerifiedSignature)
    );
    // A stated key hash that is not the key's.
    let zero = REKOR_VKEY.replace("c0d23d6a", "00000000");
    assert_eq!(
        parse_verifier_key(&zero).err(),
        Some(NoteError::KeyIdMismatch {
            stated: 0,
            computed: 0xc0d23d6a
        })
    );
    // Garbage signature.
    let garbage = REKOR_NOTE.replace(
        "wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=",
        "THIS/IS/PROBABLY/NOT/A/VALID/SIGNATURE/ANy/MOREowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=",
    );
    assert!(verify(&garbage, &[REKOR_VKEY]).is_err());
    // Garbage behind the right key ID: a known key whose signature fails.
    let mut payload = STANDARD
        .decode("THIS/IS/PROBABLY/NOT/A/VALID/SIGNATURE/ANy/MOREowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=")
        .unwrap();
    payload[..4].copy_from_slice(&0xc0d23d6au32.to_be_bytes());
    let garbage = format!(
        "Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n— rekor.sigstore.dev {}\n",
        STANDARD.encode(payload)
    );
    assert_eq!(
        verify(&garbage, &[REKOR_VKEY]),
        Err(NoteError::InvalidSignature {
            name: "rekor.sigstore.dev".into(),
            key_id: 0xc0d23d6a
        })
    );
}

#[test]
fn x_mod_ed25519_notes_verify() {
    let note = format!("{PROBLEM_TEXT}\n{PETER_LINE}{ENOCH_LINE}");
    let v = verify(&note, &[PETER_VKEY, ENOCH_VKEY]).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(
        verify(&note, &[PETER_VKEY]).unwrap()[0].name,
        "PeterNeumann"
    );
    assert_eq!(verify(&note, &[ENOCH_VKEY]).unwrap()[0].name, "EnochRoot");
    assert_eq!(verify(&note, &[]), Err(NoteError::NoVerifiedSignature));
    assert_eq!(vkey(ENOCH_VKEY).key_id(), 0xaf0cfe78);
}

#[test]
fn signing_with_the_x_mod_signer_key_reproduces_the_line() {
    let signer = Ed25519Signer::from_signer_key(PETER_SKEY).unwrap();
    assert_eq!(signer.verifier_key(), PETER_VKEY);
    let mut note = Note::new(PROBLEM_TEXT).unwrap();
    note.sign(&signer).unwrap();
    assert_eq!(note.signatures()[0].to_line(), PETER_LINE);
    assert_eq!(
        String::from_utf8(note.to_bytes()).unwrap(),
        format!("{PROBLEM_TEXT}\n{PETER_LINE}")
    );
}

#[test]
fn bad_name_line_is_malformed() {
    let note = format!(
        "{PROBLEM_TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    );
    assert!(matches!(
        Note::parse(note.as_bytes()),
        Err(NoteError::MalformedSignatureLine { line: 1, .. })
    ));
}

#[test]
fn c2sp_example_note_verifies() {
    let v = verify(FOO_NOTE, &[FOO_VKEY]).unwrap();
    assert_eq!(
        (v[0].name.as_str(), v[0].key_id),
        ("example.com/foo", 0x530d903a)
    );
    assert_eq!(
        Note::parse(FOO_NOTE.as_bytes()).unwrap().to_bytes(),
        FOO_NOTE.as_bytes()
    );
}

#[test]
fn derived_cosigned_checkpoint_verifies() {
    let note_text = cosigned_checkpoint();
    let note = Note::parse(note_text.as_bytes()).unwrap();
    assert_eq!(note.to_bytes(), note_text.as_bytes());
    let log = vkey(LOG_VKEY);
    let witness = CosignatureVerifier::from_verifier_key(WITNESS_VKEY).unwrap();
    let verified = note.verify(&[log.as_ref(), &witness]).unwrap();
    let names: Vec<_> = verified.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["example.com/log", "example.com/witness"]);
    // The verifier reports the cosignature's time.
    assert_eq!(witness.verified_timestamp(&note), Ok(COSIGN_TIME));
    let witness_sig = &verified[1].signature;
    assert_eq!(
        witness.verify_cosignature(note.text().as_bytes(), witness_sig),
        Ok(COSIGN_TIME)
    );
    // The exact bytes the witness signed.
    assert_eq!(
        hex::encode(cosignature_message(COSIGN_TIME, note.text().as_bytes())),
        COSIGNED_MESSAGE_HEX
    );
    // The log signature alone, or the cosignature alone, each suffice for its own key.
    assert!(note.verify(&[log.as_ref()]).is_ok());
    assert!(note.verify(&[&witness]).is_ok());
    // The checkpoint body.
    let cp = Checkpoint::from_note(&note).unwrap();
    assert_eq!(cp.origin, "example.com/log");
    assert_eq!(cp.size, 8);
    assert_eq!(
        cp.root,
        Hash::from_bytes(
            hex::decode("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
                .unwrap()
                .try_into()
                .unwrap()
        )
    );
    assert_eq!(cp.to_text(), CHECKPOINT_TEXT);
}

#[test]
fn derived_checkpoint_signatures_are_reproduced() {
    let cp = Checkpoint::parse(CHECKPOINT_TEXT).unwrap();
    let mut note = cp.to_note().unwrap();
    let log = Ed25519Signer::from_signer_key(LOG_SKEY).unwrap();
    assert_eq!(log.verifier_key(), LOG_VKEY);
    let witness =
        CosignatureSigner::new("example.com/witness", witness_key(), || COSIGN_TIME).unwrap();
    assert_eq!(witness.verifier_key(), WITNESS_VKEY);
    note.sign(&log).unwrap();
    note.sign(&witness).unwrap();
    assert_eq!(
        String::from_utf8(note.to_bytes()).unwrap(),
        cosigned_checkpoint()
    );
    // Explicit timestamp, same bytes.
    let payload = witness
        .sign_at(CHECKPOINT_TEXT.as_bytes(), COSIGN_TIME)
        .unwrap();
    assert_eq!(payload, note.signatures()[1].signature);
}

#[test]
fn derived_ecdsa_vector_is_reproduced_byte_for_byte() {
    let signer = EcdsaSigner::new("example.com/ecdsa-log", ecdsa_key()).unwrap();
    assert_eq!(signer.verifier_key(), ECDSA_VKEY);
    let mut note = Note::new(CHECKPOINT_TEXT).unwrap();
    note.sign(&signer).unwrap();
    // RFC 6979 nonce, low-S, DER: identical to the vector.
    assert_eq!(note.signatures()[0].to_line(), ECDSA_LINE);
    let published = format!("{CHECKPOINT_TEXT}\n{ECDSA_LINE}");
    assert!(verify(&published, &[ECDSA_VKEY]).is_ok());
}

#[test]
fn checkpoint_format_matches_go_tlog() {
    // x/mod tlog FormatTree(Tree{123456789012, RecordHash("hello world")}).
    let mut leaf = Sha256::new();
    leaf.update([0u8]);
    leaf.update(b"hello world");
    let cp = Checkpoint {
        origin: "go.sum database tree".into(),
        size: 123456789012,
        root: Hash::from_bytes(leaf.finalize().into()),
        extensions: vec![],
    };
    let text = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
    assert_eq!(cp.to_text(), text);
    assert_eq!(Checkpoint::parse(text).unwrap(), cp);
}

#[test]
fn spec_framing_only_examples_parse() {
    // c2sp.org/tlog-checkpoint example; the key is not published.
    let note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
    let n = Note::parse(note.as_bytes()).unwrap();
    let cp = Checkpoint::from_note(&n).unwrap();
    assert_eq!(
        (cp.origin.as_str(), cp.size),
        ("example.com/behind-the-sofa", 20852163)
    );
    let w = &n.signatures()[1];
    assert_eq!(w.key_id, 0x8d66cf3f);
    assert_eq!(
        u64::from_be_bytes(w.signature[..8].try_into().unwrap()),
        COSIGN_TIME
    );
    // transparency-dev/formats cosignature test keys parse (0x01 and 0x04).
    assert_eq!(
        vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").key_id(),
        0x7997405c
    );
    let remora = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
    assert_eq!(
        CosignatureVerifier::from_verifier_key(remora)
            .unwrap()
            .verifier_key(),
        remora
    );
    // Unknown signatures are ignored, and with no known key nothing verifies.
    assert_eq!(
        n.verify(&[vkey(FOO_VKEY).as_ref()]),
        Err(NoteError::NoVerifiedSignature)
    );
}

// --- Our own negative cases ---------------------------------------------------------------

#[test]
fn bytes_outside_the_note_alphabet_are_rejected() {
    let good = format!("{PROBLEM_TEXT}\n{PETER_LINE}");
    assert!(verify(&good, &[PETER_VKEY]).is_ok());

    let mut bad_utf8 = good.clone().into_bytes();
    bad_utf8[3] = 0xff;
    assert_eq!(Note::parse(&bad_utf8), Err(NoteError::InvalidUtf8));
    let mut truncated_dash = good.clone().into_bytes();
    let dash = truncated_dash.len() - PETER_LINE.len();
    truncated_dash.remove(dash + 1);
    assert_eq!(Note::parse(&truncated_dash), Err(NoteError::InvalidUtf8));

    for (from, to, code) in [
        ("problem,\n", "problem,\r\n", 0x0d),
        ("you think", "you\tthink", 0x09),
        ("is.", "is\0", 0),
    ] {
        let bad = good.replacen(from, to, 1);
        assert!(
            matches!(Note::parse(bad.as_bytes()), Err(NoteError::ControlCharacter { code: c, .. }) if c == code),
            "{to:?}"
        );
    }
    // A CRLF line ending on a signature line.
    let crlf = good.replace("AM=\n", "AM=\r\n");
    assert!(matches!(
        Note::parse(crlf.as_bytes()),
        Err(NoteError::ControlCharacter { code: 0x0d, .. })
    ));
}

#[test]
fn missing_final_newline_is_rejected() {
    let good = format!("{PROBLEM_TEXT}\n{PETER_LINE}");
    let no_newline = good.strip_suffix('\n').unwrap();
    assert!(matches!(
        Note::parse(no_newline.as_bytes()),
        Err(NoteError::MalformedSignatureLine { .. })
    ));
    // Text without a final newline before the blank line: the split moves and the
    // remaining "text" is not followed by signatures at all.
    let text_no_newline = format!("{}\n{PETER_LINE}", PROBLEM_TEXT.trim_end_matches('\n'));
    assert!(Note::parse(text_no_newline.as_bytes()).is_err());
    assert_eq!(
        Note::new(PROBLEM_TEXT.trim_end_matches('\n')),
        Err(NoteError::MissingFinalNewline)
    );
}

#[test]
fn too_many_signatures_are_rejected() {
    let signer = Ed25519Signer::from_signer_key(PETER_SKEY).unwrap();
    let mut lines = String::new();
    lines.push_str(PETER_LINE);
    for i in 1..=MAX_SIGNATURES as u32 {
        lines.push_str(
            &NoteSignature {
                name: "other".into(),
                key_id: i,
                signature: vec![1; 64],
            }
            .to_line(),
        );
    }
    let note = format!("{PROBLEM_TEXT}\n{lines}");
    assert_eq!(
        Note::parse(note.as_bytes()),
        Err(NoteError::TooManySignatures {
            count: MAX_SIGNATURES + 1,
            max: MAX_SIGNATURES
        })
    );
    // Exactly the limit is fine and still verifies.
    let at_limit = note.replacen(
        &NoteSignature {
            name: "other".into(),
            key_id: 1,
            signature: vec![1; 64],
        }
        .to_line(),
        "",
        1,
    );
    let n = Note::parse(at_limit.as_bytes()).unwrap();
    assert_eq!(n.signatures().len(), MAX_SIGNATURES);
    assert_eq!(n.verify(&[&signer.verifier()]).unwrap().len(), 1);
}

#[test]
fn oversize_note_is_rejected() {
    let filler = "x".repeat(MAX_NOTE_SIZE);
    let note = format!("{filler}\n\n{PETER_LINE}");
    assert!(matches!(
        Note::parse(note.as_bytes()),
        Err(NoteError::TooLarge {
            max: MAX_NOTE_SIZE,
            ..
        })
    ));
}

#[test]
fn wrong_key_ids_are_rejected_or_ignored() {
    // A vkey whose stated ID is off by one.
    let wrong = PETER_VKEY.replace("c74f20a3", "c74f20a2");
    assert_eq!(
        parse_verifier_key(&wrong).err(),
        Some(NoteError::KeyIdMismatch {
            stated: 0xc74f20a2,
            computed: 0xc74f20a3
        })
    );
    // The vkey name is hashed into an Ed25519 key ID: renaming breaks it.
    let renamed = PETER_VKEY.replace("PeterNeumann", "PeterNeuman");
    assert!(matches!(
        parse_verifier_key(&renamed),
        Err(NoteError::KeyIdMismatch { .. })
    ));
    // A signature line whose key ID was changed matches no key and is ignored.
    let mut sig = Note::parse(format!("{PROBLEM_TEXT}\n{PETER_LINE}").as_bytes())
        .unwrap()
        .signatures()[0]
        .clone();
    sig.key_id ^= 1;
    let note = format!("{PROBLEM_TEXT}\n{}", sig.to_line());
    assert_eq!(
        verify(&note, &[PETER_VKEY]),
        Err(NoteError::NoVerifiedSignature)
    );
}

#[test]
fn tampering_with_one_byte_of_text_fails() {
    let good = cosigned_checkpoint();
    let verifiers = [vkey(LOG_VKEY), vkey(WITNESS_VKEY), vkey(ECDSA_VKEY)];
    let refs: Vec<&dyn NoteVerifier> = verifiers.iter().map(|v| v.as_ref()).collect();
    let ecdsa_note = format!("{CHECKPOINT_TEXT}\n{ECDSA_LINE}");
    for note in [good.as_str(), ecdsa_note.as_str()] {
        assert!(Note::parse(note.as_bytes()).unwrap().verify(&refs).is_ok());
        // Every single-byte change of the text that keeps it a note is caught.
        for i in 0..CHECKPOINT_TEXT.len() - 1 {
            let mut bytes = note.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'9' { b'8' } else { b'9' };
            let Ok(n) = Note::parse(&bytes) else { continue };
            assert!(
                matches!(n.verify(&refs), Err(NoteError::InvalidSignature { .. })),
                "byte {i} changed and the note still verifies"
            );
        }
    }
}

#[test]
fn one_bad_known_signature_rejects_the_whole_note() {
    let mut enoch = STANDARD
        .decode(ENOCH_LINE.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    let last = enoch.len() - 1;
    enoch[last] ^= 0x01;
    let note = format!(
        "{PROBLEM_TEXT}\n{PETER_LINE}— EnochRoot {}\n",
        STANDARD.encode(enoch)
    );
    assert_eq!(
        verify(&note, &[PETER_VKEY, ENOCH_VKEY]),
        Err(NoteError::InvalidSignature {
            name: "EnochRoot".into(),
            key_id: 0xaf0cfe78
        })
    );
    // When EnochRoot is not a known key its broken signature is just ignored.
    assert_eq!(verify(&note, &[PETER_VKEY]).unwrap().len(), 1);
}

#[test]
fn duplicate_signature_lines_are_rejected() {
    let twice = format!("{PROBLEM_TEXT}\n{PETER_LINE}{PETER_LINE}");
    assert_eq!(
        Note::parse(twice.as_bytes()),
        Err(NoteError::DuplicateSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );
    // Two different signatures claiming the same key are just as ambiguous.
    let witness = CosignatureSigner::new("example.com/witness", witness_key(), || 0).unwrap();
    let mut note = Note::new(CHECKPOINT_TEXT).unwrap();
    note.sign(&witness).unwrap();
    let earlier = note.signatures()[0].to_line();
    let twice = format!("{}{earlier}", cosigned_checkpoint());
    assert!(matches!(
        Note::parse(twice.as_bytes()),
        Err(NoteError::DuplicateSignature { .. })
    ));
    // Re-signing replaces the signature instead of adding a second one.
    let mut note = Note::parse(cosigned_checkpoint().as_bytes()).unwrap();
    note.sign(&witness).unwrap();
    assert_eq!(note.signatures().len(), 2);
    let v = CosignatureVerifier::from_verifier_key(WITNESS_VKEY).unwrap();
    assert_eq!(v.verified_timestamp(&note), Ok(0));
}

#[test]
fn cosignature_verifier_rejects_other_times_and_texts() {
    let v = CosignatureVerifier::from_verifier_key(WITNESS_VKEY).unwrap();
    let note = Note::parse(cosigned_checkpoint().as_bytes()).unwrap();
    let mut sig = note.signatures()[1].signature.clone();
    assert_eq!(sig.len(), 72);
    // Claiming another time breaks the signature.
    sig[7] ^= 1;
    assert!(v.verify_cosignature(note.text().as_bytes(), &sig).is_err());
    // The 0x01 verifier of the same key does not accept cosignatures (different
    // message and key ID).
    let as_ed25519 = Ed25519Signer::new("example.com/witness", witness_key()).unwrap();
    assert_ne!(as_ed25519.key_id(), v.key_id());
    assert!(
        !as_ed25519
            .verifier()
            .verify(note.text().as_bytes(), &note.signatures()[1].signature[8..])
    );
}
