//! The real `gatehouse serve` binary as a child process: started on a free port with its log
//! read (and dropped) so it never blocks on a full pipe, stopped by SIGTERM or killed by SIGKILL.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::helpers::{TestDb, gatehouse, gatehouse_at};

pub struct Served {
    pub child: Child,
    pub port: u16,
}

impl Served {
    /// `gatehouse serve` on `db` with these extra environment variables (`GATEHOUSE_TEST_BIN`
    /// runs another build of the server).
    pub fn start<K: AsRef<OsStr>, V: AsRef<OsStr>>(db: &TestDb, env: impl IntoIterator<Item = (K, V)>) -> Served {
        let mut command = match std::env::var_os("GATEHOUSE_TEST_BIN") {
            Some(bin) => gatehouse_at(std::path::Path::new(&bin)),
            None => gatehouse(),
        };
        command
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("GATEHOUSE__SERVER__LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE__LOG__FORMAT", "json")
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = lines.next().expect("server logged its port").unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "gatehouse listening" {
                break v["port"].as_u64().unwrap() as u16;
            }
        };
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Served { child, port }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the graceful stop; true when it exited cleanly.
    pub fn terminate(mut self) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap().success()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
