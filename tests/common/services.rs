//! The external services of the remote-storage tests, started for real
//! from the scripts in `scripts/lib/`: a throwaway PostgreSQL (`pg.sh`) and
//! the S3-compatible server s3s-fs (`s3.sh`), each on a free loopback port
//! over a temporary directory, stopped when dropped. A service that cannot
//! start fails the test (it never skips). Also compiled into the library's
//! own tests (the store conformance suite), so it uses only std and tempfile.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The access key and secret of the test bucket server (see `s3.sh`).
pub const S3_ACCESS_KEY: &str = "veritrail";
/// The secret key of the test bucket server.
pub const S3_SECRET_KEY: &str = "veritrail-secret";
/// The bucket `s3.sh` creates.
pub const S3_BUCKET: &str = "log";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/lib")
        .join(name)
}

/// A free loopback port (bound, then released for the service).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("couldn't run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `serve` flags that keep a log in `pg` and in `s3`'s bucket `log`
/// under the prefix `audit` (the credentials are in [`ObjectServer::env`]).
pub fn remote_flags(pg: &Postgres, s3: &ObjectServer) -> Vec<String> {
    vec![
        "--store".into(),
        pg.url(),
        "--objects".into(),
        "s3://log/audit".into(),
        "--objects-endpoint".into(),
        s3.endpoint(),
    ]
}

/// A throwaway PostgreSQL cluster.
pub struct Postgres {
    dir: PathBuf,
    port: u16,
    running: bool,
    _tmp: tempfile::TempDir,
}

impl Postgres {
    /// Creates and starts a cluster on a free port.
    pub fn start() -> Postgres {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let mut pg = Postgres {
            dir: tmp.path().join("pg"),
            port: free_port(),
            running: false,
            _tmp: tmp,
        };
        pg.resume();
        pg
    }

    /// The connection URL of the `veritrail` database.
    pub fn url(&self) -> String {
        format!("postgres://veritrail@127.0.0.1:{}/veritrail", self.port)
    }

    /// Stops the server (fast shutdown), keeping its data.
    pub fn stop(&mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        run(
            Command::new(script("pg.sh")).args(["stop", &dir]),
            "pg.sh stop",
        );
        self.running = false;
    }

    /// Starts the stopped server again on the same port.
    pub fn resume(&mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        run(
            Command::new(script("pg.sh")).args(["start", &dir, &self.port.to_string()]),
            "pg.sh start (PostgreSQL 15)",
        );
        self.running = true;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let dir = self.dir.to_string_lossy().into_owned();
            let _ = Command::new(script("pg.sh"))
                .args(["kill", &dir])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An s3s-fs server over a temporary directory, with the bucket `log`.
pub struct ObjectServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl ObjectServer {
    /// Starts s3s-fs on a free port (installing it on the first use).
    pub fn start() -> ObjectServer {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let mut s = ObjectServer {
            dir: tmp.path().join("s3"),
            port: free_port(),
            child: None,
            _tmp: tmp,
        };
        s.resume();
        s
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory of the bucket (`<root>/log`): its files are the objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.join(S3_BUCKET)
    }

    /// Kills the server: every request fails until [`ObjectServer::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn resume(&mut self) {
        let bin = run(
            Command::new(script("s3.sh")).arg("bin"),
            "s3.sh bin (s3s-fs)",
        );
        std::fs::create_dir_all(self.bucket_dir()).expect("create the bucket directory");
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("s3s-fs log file");
        let child = Command::new(bin.trim())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("couldn't start s3s-fs");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("s3s-fs did not answer on port {}", self.port);
    }

    /// The environment the log needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_string()),
        ]
    }
}

impl Drop for ObjectServer {
    fn drop(&mut self) {
        self.stop();
    }
}
