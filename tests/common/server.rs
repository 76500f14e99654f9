//! The real `veritrail` binary as a test sees it: started on 127.0.0.1:0
//! (or an address the test names) with a data directory the test owns,
//! ready once it printed `listening on URL`, stopped with SIGTERM or killed
//! with SIGKILL, and restarted on the same address and data.
//!
//! Invariant: a `Server` owns its child process; dropping it kills and
//! reaps the child on every path, so a failing test leaves no server behind.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The binary under test: `VERITRAIL_BIN` (set by scripts/test.sh to the
/// release build) or the one cargo built for this test run.
pub fn binary() -> PathBuf {
    std::env::var_os("VERITRAIL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_veritrail")))
}

/// Writes a witness configuration at `path`: the witness `name` and the one
/// log it cosigns, `origin` with its verifier keys.
pub fn write_witness_config(path: &Path, name: &str, origin: &str, vkeys: &[&str]) {
    let vkeys: Vec<String> = vkeys.iter().map(|k| format!("{k:?}")).collect();
    std::fs::write(
        path,
        format!(
            "name = {name:?}\n[[log]]\norigin = {origin:?}\nvkeys = [{}]\n",
            vkeys.join(", ")
        ),
    )
    .unwrap();
}

/// A running `veritrail serve` or `veritrail witness`.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
    /// What the process printed on stdout up to and including `listening on`.
    pub stdout_lines: Vec<String>,
    /// Everything the server printed after it started listening, stdout and
    /// stderr interleaved as read.
    pub output: Arc<Mutex<Vec<String>>>,
    /// Everything the server printed on stderr.
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// The arguments and environment it was started with, for `restart`.
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    /// The threads draining stdout and stderr; they end when the process does.
    drains: Vec<JoinHandle<()>>,
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

    /// Runs the binary with exactly `args` (a subcommand and its flags,
    /// `--listen` included) and waits for it to listen; `data` is the data
    /// directory those arguments name.
    pub fn run<S: AsRef<OsStr>>(args: &[S], data: &Path) -> Server {
        let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
        Self::launch(&args, data, &[]).unwrap_or_else(|e| panic!("{args:?} did not start: {e}"))
    }

    /// Runs the binary with `args` until it prints `listening on URL`.
    fn launch(args: &[&OsStr], data: &Path, env: &[(&str, &str)]) -> Result<Server, String> {
        let child = Command::new(binary())
            .args(args)
            .env("VERITRAIL_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("couldn't run the veritrail binary");
        // From here on, Drop kills and reaps the child on every path.
        let mut server = Server {
            child,
            url: String::new(),
            data: data.to_path_buf(),
            stdout_lines: Vec::new(),
            output: Arc::new(Mutex::new(Vec::new())),
            stderr: Arc::new(Mutex::new(Vec::new())),
            args: args.iter().map(|a| a.to_os_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            drains: Vec::new(),
        };
        let mut reader = BufReader::new(server.child.stdout.take().expect("stdout"));
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if n == 0 {
                let _ = server.child.wait();
                let mut err = String::new();
                if let Some(mut e) = server.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "exited before listening; stdout: {:?}; stderr: {err}",
                    server.stdout_lines
                ));
            }
            let line = line.trim_end().to_string();
            server.stdout_lines.push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                server.url = rest.trim().to_string();
                let stderr = server.child.stderr.take().expect("stderr");
                server.drain(reader, stderr);
                return Ok(server);
            }
        }
    }

    /// Keeps reading both pipes into `output`, so the server never blocks on
    /// a full pipe; panics and alarms are echoed to the test's stderr.
    fn drain(
        &mut self,
        stdout: BufReader<std::process::ChildStdout>,
        stderr: impl Read + Send + 'static,
    ) {
        let out = self.output.clone();
        self.drains.push(std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                out.lock().unwrap().push(line);
            }
        }));
        let (out, err) = (self.output.clone(), self.stderr.clone());
        self.drains.push(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("panicked") || line.contains("ALARM") {
                    eprintln!("server: {line}");
                }
                err.lock().unwrap().push(line.clone());
                out.lock().unwrap().push(line);
            }
        }));
    }

    /// `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        self.url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, a)| a)
    }

    /// The value printed after `prefix` on a stdout line before listening
    /// (a verifier key, a path).
    pub fn printed(&self, prefix: &str) -> String {
        self.stdout_lines
            .iter()
            .find_map(|l| l.split(prefix).nth(1))
            .unwrap_or_else(|| panic!("no line with {prefix:?} in {:?}", self.stdout_lines))
            .trim()
            .to_string()
    }

    /// The process id, for signals a test sends (SIGSTOP, SIGCONT).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed after listening so far (stdout and stderr).
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The admin key written on first start.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.key"))
            .expect("admin.key")
            .trim()
            .to_string()
    }

    /// SIGTERM and wait (graceful shutdown).
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }

    /// SIGKILL and wait; returns everything the server printed on stderr,
    /// complete because the pipes are read to their end.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for drain in self.drains.drain(..) {
            let _ = drain.join();
        }
        self.stderr.lock().unwrap().clone()
    }

    /// Stops gracefully and starts again with the same arguments, data and
    /// address (`--listen` becomes the address it was listening on).
    pub fn restart(mut self) -> Server {
        self.terminate();
        self.relaunch()
    }

    /// SIGKILL (no shutdown at all) and starts again as [`Server::restart`] does.
    pub fn crash_restart(mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.relaunch()
    }

    fn relaunch(&mut self) -> Server {
        let addr = OsString::from(self.addr());
        let mut args = std::mem::take(&mut self.args);
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = addr;
        }
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Self::launch(&args, &self.data, &env)
            .unwrap_or_else(|e| panic!("{args:?} did not restart: {e}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
