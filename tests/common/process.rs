//! A real `jcsync` process for the tests that need one (Ctrl-C, two syncs of one ledger): its
//! stdout and stderr read on threads so a full pipe never blocks it, and every wait bounded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jcsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};

use super::{repo, write_load_pipeline, CLIENT_ID_ENV, CLIENT_SECRET_ENV};

/// A running `jcsync`, with the sandbox's demo credentials in its environment.
pub struct Jcsync {
    pub child: Child,
    pub started: Instant,
    pub stdout: JoinHandle<String>,
    pub stderr: JoinHandle<String>,
}

/// How a `jcsync` command ended.
pub struct Finished {
    pub status: ExitStatus,
    /// From the start of the process to its exit.
    pub took: Duration,
    pub stdout: String,
    pub stderr: String,
}

fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

impl Jcsync {
    pub fn start(args: &[&str]) -> Jcsync {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jcsync"))
            .args(args)
            .env(CLIENT_ID_ENV, "demo-client")
            .env(CLIENT_SECRET_ENV, "demo-secret")
            .env("JCSYNC_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jcsync");
        let stdout = read_all(child.stdout.take().expect("stdout"));
        let stderr = read_all(child.stderr.take().expect("stderr"));
        Jcsync {
            child,
            started: Instant::now(),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait at most `limit` from now for the process to exit; on timeout kill it and fail the
    /// test.
    pub fn wait(mut self, limit: Duration, what: &str) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = self.started.elapsed();
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let stderr = self.stderr.join().unwrap_or_default();
            panic!("{what}: still running after {limit:?}, killed it; stderr:\n{stderr}");
        };
        Finished {
            status,
            took,
            stdout: self.stdout.join().expect("stdout reader"),
            stderr: self.stderr.join().expect("stderr reader"),
        }
    }
}

/// A sandbox on 127.0.0.1 whose writes take `write_latency`, so a load of the fixtures (one
/// project at a time) lasts seconds.
pub fn slow_sandbox(rt: &tokio::runtime::Runtime, write_latency: Duration) -> SandboxHandle {
    let mut config = SandboxConfig::from_dir(repo().join("fixtures/procore"));
    config.write_latency = write_latency;
    rt.block_on(Sandbox::start(config))
        .expect("the sandbox must start")
}

/// A pipeline of the fixture company loading into `sandbox`, with `load` in its `[load]` section.
pub fn sandbox_pipeline(dir: &Path, sandbox: &SandboxHandle, load: &str) -> PathBuf {
    write_load_pipeline(
        dir,
        &repo().join("fixtures/sage"),
        sandbox.url(),
        sandbox.company_id(),
        load,
    )
}
