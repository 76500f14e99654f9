//! One-shot commands of the real binary (`verify`, `monitor`, `erase`, …):
//! run to completion, with what they printed and their exit code.

use std::ffi::{OsStr, OsString};
use std::process::Command;

use super::server::binary;

/// What a finished command left behind.
pub struct Ran {
    /// The exit code; -1 when a signal ended the command.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Whether the command exited with 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// stdout then stderr, for messages and for searching either.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `veritrail ARGS` with extra environment variables to completion.
pub fn veritrail<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Ran {
    let out = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("couldn't run the veritrail binary");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `veritrail` from async code, on a blocking thread so the test's runtime
/// keeps serving whatever the command talks to.
pub async fn veritrail_async<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Ran {
    let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        veritrail(&args, &env)
    })
    .await
    .unwrap()
}
