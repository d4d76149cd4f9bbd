//! A real SMTP server for the alert tests: Python's aiosmtpd (from the `.venv-conf` virtualenv
//! that `ops/test.sh` creates), delivering every message into a Maildir the test reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{eventually, wait_until};

pub struct SmtpSink {
    pub port: u16,
    maildir: tempfile::TempDir,
    child: Child,
}

/// One delivered message: its recipients, subject and body (headers unfolded).
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GATEHOUSE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-conf/bin/python");
    assert!(venv.exists(), "{} is missing: run `bash ops/test.sh` once (it creates the virtualenv with aiosmtpd)", venv.display());
    venv
}

/// A free port on 127.0.0.1 (bound and released: the sink takes it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl SmtpSink {
    /// A plain SMTP server on a free port.
    pub fn start() -> SmtpSink {
        Self::start_on(free_port(), &[])
    }

    /// A server on `port` with extra aiosmtpd arguments (e.g. `--tlscert`, `--tlskey`).
    pub fn start_on(port: u16, extra: &[&str]) -> SmtpSink {
        let maildir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(maildir.path().join(sub)).unwrap();
        }
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let up = wait_until(Duration::from_secs(15), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "aiosmtpd listens on {port}");
        SmtpSink { port, maildir, child }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Points an application's alerts at this server, with fast timings: the outbox is polled
    /// every 50 ms, the rules evaluated every 100 ms, and pools reloaded every 100 ms.
    pub fn configure(&self, c: &mut gatehouse::config::Config) {
        mail_to(c, &self.url());
    }

    /// Every message delivered so far.
    pub fn mails(&self) -> Vec<Mail> {
        let dir = self.maildir.path().join("new");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        let mut mails: Vec<Mail> = entries.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).map(|text| parse(&text)).collect();
        mails.sort_by(|a, b| (&a.to, &a.subject).cmp(&(&b.to, &b.subject)));
        mails
    }

    /// Waits (without blocking the test's runtime, where the mailer runs) until at least `n`
    /// messages were delivered, then returns them all.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Mail> {
        let arrived = eventually(limit, || async { self.mails().len() >= n }).await;
        let mails = self.mails();
        assert!(arrived, "expected {n} mails, got {}: {mails:#?}", mails.len());
        mails
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fast alert timings against the SMTP server at `url` (which may not be listening yet).
pub fn mail_to(c: &mut gatehouse::config::Config, url: &str) {
    c.alerts.smtp_url = gatehouse::config::Secret::new(url);
    c.alerts.from = "Gatehouse <alerts@example.com>".into();
    c.alerts.poll_ms = 50;
    c.alerts.evaluate_ms = 100;
    c.alerts.retry_base_ms = 100;
    c.gateway.refresh_interval_ms = 100;
}

fn parse(text: &str) -> Mail {
    let (head, body) = text.split_once("\n\n").or_else(|| text.split_once("\r\n\r\n")).unwrap_or((text, ""));
    let unfolded = head.replace("\r\n ", " ").replace("\n ", " ").replace("\r\n\t", " ").replace("\n\t", " ");
    let header = |name: &str| {
        unfolded
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned()))
            .unwrap_or_default()
    };
    Mail { to: header("To"), subject: header("Subject"), body: body.to_owned() }
}
