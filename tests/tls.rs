//! `serve --tls-cert/--tls-key`: the real binary speaks HTTPS with a
//! certificate made here, announces `https://`, and refuses plain HTTP on
//! that port; plain HTTP on a non-loopback address warns on stderr.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use common::{
    Ran, Server, event, log_verifiers, verify_checkpoint, veritrail, write_witness_config,
};
use serde_json::{Value, json};

struct TestCert {
    pem: String,
    _dir: tempfile::TempDir,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

fn self_signed() -> TestCert {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let pem = certified.cert.pem();
    std::fs::write(&cert_path, &pem).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    TestCert {
        pem,
        _dir: dir,
        cert_path,
        key_path,
    }
}

fn https_client(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Runs `serve` on loopback with a data directory in `dir` and `extra`
/// flags, for flags that must stop it before it listens.
fn serve_once(dir: &Path, extra: &[&OsStr]) -> Ran {
    let data = dir.join("data");
    let mut args: Vec<&OsStr> = ["serve", "--listen", "127.0.0.1:0", "--data"]
        .map(OsStr::new)
        .to_vec();
    args.push(data.as_os_str());
    args.extend(extra);
    veritrail(&args, &[("VERITRAIL_LOG", "warn")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_given_certificate_and_refuses_plain_http() {
    let cert = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.cert_path.to_str().unwrap(),
            "--tls-key",
            cert.key_path.to_str().unwrap(),
        ],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "announced {}",
        server.url
    );
    let client = https_client(&cert.pem);

    // Admin and writer calls over TLS.
    let resp = client
        .post(format!("{}/v1/admin/keys", server.url))
        .bearer_auth(server.admin_key())
        .json(&json!({ "name": "tls-app", "role": "writer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let writer = resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    // The log's own records so far (its admin actions) come first.
    let size0 = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["committed_size"]
        .as_u64()
        .unwrap();
    let resp = client
        .post(format!("{}/v1/events?wait=checkpoint", server.url))
        .bearer_auth(&writer)
        .json(&event(1, Some("tls-1".into())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let receipt: Value = resp.json().await.unwrap();
    assert_eq!(receipt["events"][0]["index"], size0);

    // The signed checkpoint, read over TLS, covers the event.
    let log: Value = client
        .get(format!("{}/v1/log", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let note = client
        .get(format!("{}/checkpoint", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let cp = verify_checkpoint(&note, &log_verifiers(&log));
    assert_eq!(cp.size, size0 + 1);

    // Plain HTTP to the TLS port gets no answer.
    let plain_url = server.url.replacen("https://", "http://", 1);
    let plain = common::http()
        .get(format!("{plain_url}/checkpoint"))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP to the TLS port answered {:?}",
        plain.map(|r| r.status())
    );
    // A client that does not trust the certificate refuses the server.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only(Vec::new())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("{}/checkpoint", server.url))
            .send()
            .await
            .is_err()
    );
    // The CLI's admin commands trust the certificate with --ca-cert; a
    // backup over TLS is complete.
    let backup = tempfile::tempdir().unwrap();
    let admin_key = dir.path().join("data").join("admin.key");
    let out = veritrail(
        &[
            "backup".as_ref(),
            "--url".as_ref(),
            server.url.as_ref(),
            "--ca-cert".as_ref(),
            cert.cert_path.as_os_str(),
            "--admin-key-file".as_ref(),
            admin_key.as_os_str(),
            "--to".as_ref(),
            backup.path().join("b").as_os_str(),
        ],
        &[],
    );
    assert!(out.ok(), "{}", out.stderr);
    let out = veritrail(
        &[
            "keys".as_ref(),
            "list".as_ref(),
            "--url".as_ref(),
            server.url.as_ref(),
            "--admin-key-file".as_ref(),
            admin_key.as_os_str(),
        ],
        &[],
    );
    assert!(
        !out.ok(),
        "without --ca-cert the certificate is not trusted"
    );
    assert!(server.stop().success(), "graceful shutdown under TLS");
}

#[test]
fn a_key_without_a_certificate_is_refused() {
    let cert = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let out = serve_once(
        dir.path(),
        &["--tls-key".as_ref(), cert.key_path.as_os_str()],
    );
    assert!(!out.ok());
    let err = &out.stderr;
    assert!(err.contains("--tls-cert"), "stderr: {err}");
}

#[test]
fn an_unreadable_certificate_is_reported_before_listening() {
    let cert = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not-a-cert.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let out = serve_once(
        dir.path(),
        &[
            "--tls-cert".as_ref(),
            bogus.as_os_str(),
            "--tls-key".as_ref(),
            cert.key_path.as_os_str(),
        ],
    );
    assert!(!out.ok());
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(!stdout.contains("listening on"), "stdout: {stdout}");
    assert!(
        stderr.contains("TLS certificate") && stderr.contains("not-a-cert.pem"),
        "stderr: {stderr}"
    );
}

#[test]
fn plain_http_on_a_non_loopback_address_warns_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::run(
        &[
            "serve".as_ref(),
            "--listen".as_ref(),
            "0.0.0.0:0".as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
        ],
        &data,
    );
    let listening = server.stdout_lines.last().cloned();
    let stderr = server.kill().join("\n");
    assert!(
        listening
            .as_deref()
            .unwrap_or("")
            .contains("http://0.0.0.0:"),
        "{listening:?}"
    );
    assert!(
        stderr.contains("WARNING: serving plain HTTP on 0.0.0.0:"),
        "stderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_serves_https_and_the_log_reaches_it_through_its_peer_ca() {
    let cert = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");

    // The log's origin and keys, for the witness's configuration.
    let log = Server::start(&data, &["--origin", "tls.example/log"]);
    let info = common::get_json(&format!("{}/v1/log", log.url)).await;
    let admin = log.admin_key();
    let writer = common::create_key(&log.url, &admin, "app", "writer").await;
    let size0 = common::committed_size(&log.url).await;
    assert!(log.stop().success());
    let config = dir.path().join("witness.toml");
    write_witness_config(
        &config,
        "tls.example/witness",
        "tls.example/log",
        &[
            info["verifier_keys"]["ecdsa"].as_str().unwrap(),
            info["verifier_keys"]["ed25519"].as_str().unwrap(),
        ],
    );

    let witness = Server::start_witness(
        &dir.path().join("witness"),
        &config,
        &[
            "--tls-cert",
            cert.cert_path.to_str().unwrap(),
            "--tls-key",
            cert.key_path.to_str().unwrap(),
        ],
    );
    assert!(
        witness.url.starts_with("https://127.0.0.1:"),
        "announced {}",
        witness.url
    );
    let wvkey = witness.printed("witness verifier key ");
    let health = https_client(&cert.pem)
        .get(format!("{}/healthz", witness.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let plain_url = witness.url.replacen("https://", "http://", 1);
    assert!(
        common::http()
            .get(format!("{plain_url}/healthz"))
            .send()
            .await
            .is_err(),
        "plain HTTP to the witness's TLS port answered"
    );

    let submit = |url: String, n: usize| {
        let writer = writer.clone();
        async move {
            let resp = common::http()
                .post(format!("{url}/v1/events?wait=witnessed"))
                .bearer_auth(&writer)
                .json(&event(n, None))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let log_args = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "--witness",
            witness.url.as_str(),
            wvkey.as_str(),
            "--witness-timeout-ms",
            "1000",
            "--checkpoint-interval-ms",
            "100",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // Without the witness's CA the log cannot trust it: the events are
    // durable and signed (202), but not witnessed.
    let args = log_args(&[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = Server::start(&data, &refs);
    let (status, body) = submit(log.url.clone(), 1).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["witnessed"], false, "{body}");
    assert!(log.stop().success());

    // With --peer-ca-cert the witness is trusted and cosigns over HTTPS.
    let ca = cert.cert_path.to_str().unwrap().to_string();
    let args = log_args(&[]);
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refs.extend(["--peer-ca-cert", ca.as_str()]);
    let log = Server::start(&data, &refs);
    let (status, body) = submit(log.url.clone(), 2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["witnessed"], true, "{body}");
    let note = body["checkpoint"].as_str().unwrap();
    let cosigner = veritrail::note::parse_verifier_key(&wvkey).unwrap();
    let signed = veritrail::note::Note::parse(note.as_bytes())
        .unwrap()
        .verify(&[&*cosigner])
        .unwrap();
    assert_eq!(signed.len(), 1, "the witness's cosignature verifies");
    let cp = verify_checkpoint(note, &log_verifiers(&info));
    assert_eq!(cp.size, size0 + 2, "the two events after the log's own");
    assert!(log.stop().success());
}

#[test]
fn a_peer_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("ca.pem");
    std::fs::write(&bogus, "no certificate here\n").unwrap();
    let out = serve_once(dir.path(), &["--peer-ca-cert".as_ref(), bogus.as_os_str()]);
    assert!(!out.ok());
    let err = &out.stderr;
    assert!(err.contains("holds no PEM certificate"), "stderr: {err}");
}
