//! `gatehouse dev` end to end: a private cluster is created, the server answers, SIGINT stops
//! Gatehouse and its PostgreSQL, and a second start reuses the data.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::helpers::{gatehouse, shared_tempdir, wait_until};

struct Dev {
    child: Child,
    base: String,
    banner: String,
}

fn start_dev(data_dir: &Path) -> Dev {
    let mut child = gatehouse()
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("dev printed its banner").unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.strip_prefix("Gatehouse dev is running at ") {
            break rest.trim().to_owned();
        }
    };
    for line in lines.by_ref().take(8) {
        banner.push_str(&line.unwrap());
        banner.push('\n');
    }
    Dev { child, base, banner }
}

fn get(url: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { reqwest::get(url).await.map(|r| r.status().as_u16()).unwrap_or(0) })
}

fn interrupt(dev: &mut Dev) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(dev.child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = dev.child.wait().unwrap();
    assert!(status.success(), "dev exited with {status}");
}

/// PIDs of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

/// The processes still running from `data_dir` once they are gone, or after 10 s: the
/// postmaster removes its pid file (which `pg_ctl stop` waits for) just before it exits.
fn processes_left(data_dir: &Path) -> Vec<u32> {
    let needle = data_dir.display().to_string();
    wait_until(Duration::from_secs(10), || processes_mentioning(&needle).is_empty());
    processes_mentioning(&needle)
}

fn line_with<'a>(banner: &'a str, prefix: &str) -> &'a str {
    banner.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in {banner}"))
}

#[test]
fn dev_runs_a_private_cluster_stops_it_on_sigint_and_reuses_it() {
    let dir = shared_tempdir();
    let data_dir = dir.path().join("data");

    let mut first = start_dev(&data_dir);
    assert_eq!(get(&format!("{}/healthz", first.base)), 200);
    assert_eq!(get(&format!("{}/readyz", first.base)), 200);
    assert!(data_dir.join("postgres/PG_VERSION").is_file());
    assert!(!processes_mentioning(&data_dir.display().to_string()).is_empty(), "postgres runs from the data folder");
    interrupt(&mut first);
    assert!(!data_dir.join("postgres/postmaster.pid").exists(), "postgres shut down cleanly");
    assert_eq!(processes_left(&data_dir), Vec::<u32>::new(), "no postgres process left");

    let mut second = start_dev(&data_dir);
    assert_eq!(get(&format!("{}/readyz", second.base)), 200);
    // Same tenant and the same operator login: the data was reused, not recreated.
    assert_eq!(line_with(&first.banner, "tenant:"), line_with(&second.banner, "tenant:"));
    assert_eq!(line_with(&first.banner, "operator:"), line_with(&second.banner, "operator:"));
    // The dashboard's address and the operator's login, the same password across restarts.
    let dashboard = line_with(&second.banner, "dashboard:");
    assert!(dashboard.contains(&format!("{}/admin/login", second.base)), "{dashboard}");
    let login = |line: &str| line.split_once("sign in as").map(|(_, rest)| rest.to_owned());
    assert_eq!(login(line_with(&first.banner, "dashboard:")), login(dashboard));
    assert!(login(dashboard).is_some_and(|l| l.contains("password ")), "{dashboard}");
    interrupt(&mut second);
    assert_eq!(processes_left(&data_dir), Vec::<u32>::new(), "no postgres process left");
}

#[test]
fn dev_with_database_url_starts_no_cluster() {
    let db = crate::helpers::TestDb::new();
    let dir = shared_tempdir();
    let mut child = gatehouse()
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("banner").unwrap();
        if let Some(rest) = line.strip_prefix("Gatehouse dev is running at ") {
            break rest.trim().to_owned();
        }
    };
    assert_eq!(get(&format!("{base}/readyz")), 200);
    assert!(!dir.path().join("postgres").exists(), "no private cluster was created");
    let mut dev = Dev { child, base, banner: String::new() };
    interrupt(&mut dev);
}
