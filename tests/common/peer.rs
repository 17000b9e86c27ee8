//! The SQL Server test peer: pySQLbridge (PyPI `pysqlbridge`), a TDS server that serves CSV
//! files as tables. The harness installs it into a venv under `target/` (once, under a file
//! lock so parallel tests do not race), starts it on a free 127.0.0.1 port serving CSV copies of
//! the fixtures, waits until the port accepts, and kills it on drop.
//!
//! If it cannot be installed or started the test fails with the reason; it never skips.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pySQLbridge version the tests are written against.
pub const PYSQLBRIDGE_VERSION: &str = "2.1.3";
/// The login the peer accepts.
pub const PEER_USER: &str = "jcsync";

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// How to start pySQLbridge: the program and the PYTHONPATH it needs, if any.
pub struct Launcher {
    program: PathBuf,
    args: Vec<String>,
    python_path: Option<PathBuf>,
}

/// pySQLbridge installed under `target/tmp`, on first use: in a venv, or, where python3 has no
/// `venv` module (Debian without python3-venv), with `pip install --target`.
pub fn install() -> Launcher {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("target tmp dir");
    let venv = base.join("pysqlbridge-venv");
    let site = base.join("pysqlbridge-site");
    let lock = File::create(base.join("pysqlbridge.lock")).expect("lock file");
    lock.lock().expect("lock the install");
    let venv_ready = venv.join(format!(".jcsync-ready-{PYSQLBRIDGE_VERSION}"));
    let site_ready = site.join(format!(".jcsync-ready-{PYSQLBRIDGE_VERSION}"));
    let package = format!("pysqlbridge=={PYSQLBRIDGE_VERSION}");
    let pip_flags = ["install", "--disable-pip-version-check", "--quiet"];
    if !venv_ready.is_file() && !site_ready.is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        let in_venv = run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )
        .and_then(|()| {
            run(
                Command::new(venv.join("bin/pip"))
                    .args(pip_flags)
                    .arg(&package),
                "pip install pysqlbridge (in the venv)",
            )
        })
        .and_then(|()| std::fs::write(&venv_ready, b"ok").map_err(|e| e.to_string()));
        if let Err(venv_error) = in_venv {
            let _ = std::fs::remove_dir_all(&site);
            let r = run(
                Command::new("python3")
                    .args(["-m", "pip"])
                    .args(pip_flags)
                    .arg("--target")
                    .arg(&site)
                    .arg(&package),
                "python3 -m pip install --target",
            );
            if let Err(pip_error) = r {
                panic!("test peer: cannot install pySQLbridge (python3 and PyPI are needed):\n{venv_error}\n{pip_error}");
            }
            std::fs::write(&site_ready, b"ok").expect("ready marker");
        }
    }
    drop(lock);
    if venv_ready.is_file() {
        Launcher {
            program: venv.join("bin/python"),
            args: vec!["-m".into(), "pysqlbridge".into()],
            python_path: None,
        }
    } else {
        Launcher {
            program: PathBuf::from("python3"),
            args: vec!["-m".into(), "pysqlbridge".into()],
            python_path: Some(site),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running pySQLbridge serving some CSV tables.
pub struct Peer {
    child: Child,
    pub port: u16,
    /// Name of the environment variable holding the login's password.
    pub password_env: String,
    pub password: String,
    pub dir: tempfile::TempDir,
}

impl Peer {
    /// Serve every `*.csv` of `csv_dir` (table = file stem) plus `extra` (name, CSV text).
    pub fn start(csv_dir: &Path, extra: &[(&str, String)]) -> Peer {
        let launcher = install();
        let dir = tempfile::tempdir().expect("peer dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let mut tables = Vec::new();
        for e in std::fs::read_dir(csv_dir).expect("csv dir") {
            let p = e.expect("entry").path();
            if p.extension().and_then(|x| x.to_str()) != Some("csv") {
                continue;
            }
            let name = p.file_stem().expect("stem").to_string_lossy().to_string();
            std::fs::copy(&p, data.join(format!("{name}.csv"))).expect("copy csv");
            tables.push(name);
        }
        for (name, text) in extra {
            std::fs::write(data.join(format!("{name}.csv")), text).expect("write csv");
            tables.push(name.to_string());
        }
        let port = free_port();
        let password = format!("pw-{port}-{}", std::process::id());
        let password_env = format!("JCSYNC_TEST_PEER_PW_{port}");
        std::env::set_var(&password_env, &password);
        let config = serde_json::json!({
            "logins": [{ "user": PEER_USER, "password": format!("${{env:{password_env}}}") }],
            "tables": tables.iter().map(|t| serde_json::json!({
                "name": t, "csv": format!("data/{t}.csv")
            })).collect::<Vec<_>>(),
        });
        let config_path = dir.path().join("bridge.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config");
        let log_path = dir.path().join("bridge.log");
        let log = File::create(&log_path).expect("log file");
        let mut cmd = Command::new(&launcher.program);
        cmd.args(&launcher.args);
        if let Some(p) = &launcher.python_path {
            cmd.env("PYTHONPATH", p);
        }
        let child = cmd
            .arg("--config")
            .arg(&config_path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--log")
            .arg(dir.path().join("queries.log"))
            .env(&password_env, &password)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("test peer: cannot start pysqlbridge: {e}"));
        let mut peer = Peer {
            child,
            port,
            password_env,
            password,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!(
                    "test peer: pysqlbridge exited ({status}) before listening:\n{}",
                    peer.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "test peer: pysqlbridge did not listen on 127.0.0.1:{port} within 60s:\n{}",
                peer.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        peer
    }

    /// What the peer logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default()
    }

    /// Every query the peer answered, in full.
    ///
    /// The peer logs a query only after it has sent the last row, so a client can finish before
    /// the line is written. This waits (up to 10 s) until every connection the peer accepted has
    /// been closed, which is after its queries were logged, then reads the log.
    pub fn queries(&self) -> String {
        let path = self.dir.path().join("queries.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if all_connections_closed(&log) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `[source]` section reading this peer.
    pub fn source_toml(&self, database: &str, extra: &str) -> String {
        format!(
            "[source]\nkind = \"mssql\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{database}\"\n\
             user = \"{PEER_USER}\"\npassword_env = \"{}\"\ntrust_server_certificate = true\n\
             connect_timeout_secs = 20\nquery_timeout_secs = 60\n{extra}\n",
            self.port, self.password_env
        )
    }

    /// Stop the peer now (it is also stopped on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Write a pipeline reading `source_toml`, staging into `dir/runs`; `extra` is appended.
pub fn write_mssql_pipeline(dir: &Path, source_toml: &str, extra: &str) -> PathBuf {
    let text = format!(
        "company = \"DEMO\"\n{source_toml}\n[stage]\ndir = {runs:?}\ncompression = \"zstd\"\nrow_group_rows = 16\n\
         [target]\nkind = \"dry-run\"\n{extra}\n",
        runs = dir.join("runs").display().to_string(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// Whether every `connection from ADDR` in a peer log has its `ADDR closed the connection` (or
/// another line that ends it) after it.
fn all_connections_closed(log: &str) -> bool {
    let mut open = std::collections::BTreeSet::new();
    for line in log.lines() {
        if let Some(addr) = line.split("connection from ").nth(1) {
            open.insert(addr.trim().to_string());
        } else if line.contains(" closed the connection")
            || line.contains(" went quiet")
            || line.contains(" idle for ")
            || line.contains(" failed in state ")
        {
            if let Some(addr) = line
                .split_whitespace()
                .find(|w| w.starts_with("127.0.0.1:"))
            {
                open.remove(addr);
            }
        }
    }
    open.is_empty()
}
