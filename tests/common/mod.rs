//! Test harness: runs the real `veritrail` binary on 127.0.0.1:0 with a
//! temporary data directory and talks to it over HTTP.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// The binary under test: `VERITRAIL_BIN` (set by scripts/test.sh to the
/// release build) or the one cargo built for this test run.
pub fn binary() -> PathBuf {
    std::env::var_os("VERITRAIL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_veritrail")))
}

/// A running server.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
    pub stdout_lines: Vec<String>,
    /// Everything the server printed after it started listening, stdout and
    /// stderr interleaved as read.
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `veritrail serve` on `data` with extra arguments and waits for it to listen.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Self::try_start(data, extra).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Like `start`, but returns what the server printed if it exits instead.
    pub fn try_start(data: &Path, extra: &[&str]) -> Result<Server, String> {
        Self::try_start_env(data, extra, &[])
    }

    /// Like `try_start`, with extra environment variables for the server.
    pub fn try_start_env(
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let mut args: Vec<&OsStr> = vec![OsStr::new("serve"), OsStr::new("--data")];
        args.push(data.as_os_str());
        args.extend([OsStr::new("--listen"), OsStr::new("127.0.0.1:0")]);
        args.extend(extra.iter().map(OsStr::new));
        Self::launch(&args, data, env)
    }

    /// Starts `veritrail witness` on `data` with `config`, listening on
    /// loopback, and waits for it to listen.
    pub fn start_witness(data: &Path, config: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<&OsStr> = vec![OsStr::new("witness"), OsStr::new("--data")];
        args.push(data.as_os_str());
        args.extend([OsStr::new("--config"), config.as_os_str()]);
        args.extend([OsStr::new("--listen"), OsStr::new("127.0.0.1:0")]);
        args.extend(extra.iter().map(OsStr::new));
        Self::launch(&args, data, &[]).unwrap_or_else(|e| panic!("witness did not start: {e}"))
    }

    /// Runs the binary with `args` until it prints `listening on URL`.
    fn launch(args: &[&OsStr], data: &Path, env: &[(&str, &str)]) -> Result<Server, String> {
        let mut child = Command::new(binary())
            .args(args)
            .env("VERITRAIL_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("couldn't run the veritrail binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            let n = match reader.read_line(&mut line) {
                Ok(n) => n,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e.to_string());
                }
            };
            if n == 0 {
                let _ = child.wait();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "exited before listening; stdout: {lines:?}; stderr: {err}"
                ));
            }
            let line = line.trim_end().to_string();
            lines.push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest.trim().to_string();
                let output = Arc::new(Mutex::new(Vec::new()));
                // Keep draining stdout so the server never blocks on a full pipe.
                let out = output.clone();
                std::thread::spawn(move || {
                    for line in reader.lines().map_while(Result::ok) {
                        out.lock().unwrap().push(line);
                    }
                });
                let stderr = child.stderr.take().expect("stderr");
                let out = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        if line.contains("panicked") {
                            eprintln!("server: {line}");
                        }
                        out.lock().unwrap().push(line);
                    }
                });
                return Ok(Server {
                    child,
                    url,
                    data: data.to_path_buf(),
                    stdout_lines: lines,
                    output,
                });
            }
        }
    }

    /// The admin key written on first start.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.key"))
            .expect("admin.key")
            .trim()
            .to_string()
    }

    /// SIGTERM and wait (graceful shutdown).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }

    /// SIGKILL and wait.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client with a generous timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// Creates an API key through the admin API and returns the token.
pub async fn create_key(url: &str, admin: &str, name: &str, role: &str) -> String {
    let resp = http()
        .post(format!("{url}/v1/admin/keys"))
        .bearer_auth(admin)
        .json(&json!({ "name": name, "role": role }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "creating a key");
    let v: Value = resp.json().await.unwrap();
    v["key"].as_str().unwrap().to_string()
}

/// Creates an API key with an explicit app id (writers) and returns the token.
pub async fn create_key_for_app(
    url: &str,
    admin: &str,
    name: &str,
    role: &str,
    app: &str,
) -> String {
    let resp = http()
        .post(format!("{url}/v1/admin/keys"))
        .bearer_auth(admin)
        .json(&json!({ "name": name, "role": role, "app": app }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "creating a key");
    let v: Value = resp.json().await.unwrap();
    v["key"].as_str().unwrap().to_string()
}

/// A valid audit event.
pub fn event(n: usize, id: Option<String>) -> Value {
    let mut e = json!({
        "actor": { "id": format!("user-{}", n % 97), "type": "user", "ip": "192.0.2.7" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": format!("rec-{n}") },
        "subject": format!("patient-{}", n % 13),
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "context": { "n": n },
    });
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    e
}

/// GET a JSON document.
pub async fn get_json(url: &str) -> Value {
    let resp = http().get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.unwrap()
}

/// GET raw bytes.
pub async fn get_bytes(url: &str) -> Vec<u8> {
    let resp = http().get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.bytes().await.unwrap().to_vec()
}

/// Verifiers for both log keys listed by `/v1/log`.
pub fn log_verifiers(log: &Value) -> Vec<Box<dyn veritrail::note::NoteVerifier>> {
    ["ecdsa", "ed25519"]
        .iter()
        .map(|k| {
            veritrail::note::parse_verifier_key(log["verifier_keys"][k].as_str().unwrap()).unwrap()
        })
        .collect()
}

/// Verifies a checkpoint note with both log keys and returns its body.
pub fn verify_checkpoint(
    note: &str,
    verifiers: &[Box<dyn veritrail::note::NoteVerifier>],
) -> veritrail::note::Checkpoint {
    let parsed = veritrail::note::Note::parse(note.as_bytes()).unwrap();
    let refs: Vec<&dyn veritrail::note::NoteVerifier> =
        verifiers.iter().map(|v| v.as_ref()).collect();
    assert_eq!(
        parsed.verify(&refs).unwrap().len(),
        2,
        "both log signatures verify"
    );
    veritrail::note::Checkpoint::parse(parsed.text()).unwrap()
}

/// A JSON array of base64 hashes.
pub fn hashes(v: &Value) -> Vec<veritrail::merkle::Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| veritrail::merkle::Hash::from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

/// Flips bit 0 of byte `at` (from the end when negative) of the value under
/// `key` in the stopped log `data`, through sled itself (the backend's key
/// layout: one-byte prefixes, see the sled store).
pub fn flip_stored_byte(data: &Path, key: &[u8], at: isize) {
    let db = veritrail::store::sled::sled_config(&data.join("db"))
        .open()
        .unwrap();
    let tree = db.open_tree("log").unwrap();
    let mut value = tree
        .get(key)
        .unwrap()
        .unwrap_or_else(|| panic!("no value under {key:?}"))
        .to_vec();
    let at = if at < 0 {
        value.len() - at.unsigned_abs()
    } else {
        at as usize
    };
    value[at] ^= 0x01;
    tree.insert(key, value).unwrap();
    db.flush().unwrap();
}

/// An authenticated GET: the status, the leaf index of the audit event the
/// read appended (its `veritrail-audit-index` header), and the JSON body
/// (null when there is none).
pub async fn auditor_get(url: &str, key: &str) -> (u16, Option<u64>, Value) {
    let resp = http().get(url).bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    let audit = resp
        .headers()
        .get("veritrail-audit-index")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, audit, body)
}
