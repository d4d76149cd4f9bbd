//! A private PostgreSQL cluster for `gatehouse dev` and tests: created with the system's `initdb`
//! under the data folder, served on a unix socket only (no TCP port to collide with), stopped
//! when dropped. As root it runs the PostgreSQL tools as the `postgres` system user, because
//! `initdb` refuses to run as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use sha2::{Digest, Sha256};

/// Role created by `initdb` and used by Gatehouse.
pub const ROLE: &str = "gatehouse";
/// The socket file name carries the port; nothing listens on TCP.
pub const PORT: u16 = 5432;
/// unix(7): sun_path holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under /usr/lib/postgresql/*/bin.\n\
         Install them, or set DATABASE_URL to use an existing server:\n  \
         Debian/Ubuntu: sudo apt-get install postgresql\n  \
         macOS:         brew install postgresql@16"
    )]
    NotInstalled,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Finds a directory holding both `initdb` and `pg_ctl`: PATH first, then the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off PATH), then Homebrew's.
pub fn locate_binaries() -> Result<PathBuf, ClusterError> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d)) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = Vec::new();
    for root in ["/usr/lib/postgresql", "/opt/homebrew/opt", "/usr/local/opt"] {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.trim_start_matches("postgresql@").split('.').next().and_then(|v| v.parse().ok());
            let bin = entry.path().join("bin");
            if let Some(version) = version {
                if has_tools(&bin) {
                    candidates.push((version, bin));
                }
            }
        }
    }
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin).ok_or(ClusterError::NotInstalled)
}

/// The system user PostgreSQL tools run as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

#[derive(Debug)]
pub struct PrivateCluster {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<RunAs>,
    /// Whether dropping this value stops the server.
    owns_server: bool,
}

impl PrivateCluster {
    /// Prepares (but does not create or start) a cluster under `root`, which must be absolute.
    pub fn new(root: &Path) -> Result<PrivateCluster, ClusterError> {
        let bin_dir = locate_binaries()?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres").context("cannot look up the postgres system user")?.context(
                "running as root, but there is no `postgres` system user to run PostgreSQL as \
                     (initdb refuses root); create one or run as a regular user",
            )?;
            Some(RunAs { uid: user.uid, gid: user.gid })
        } else {
            None
        };
        let mut socket_dir = root.join("run");
        if socket_dir.join(format!(".s.PGSQL.{PORT}")).as_os_str().len() > MAX_SOCKET_PATH {
            let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
            let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            socket_dir = std::env::temp_dir().join(format!("gatehouse-pg-{tag}"));
        }
        Ok(PrivateCluster { bin_dir, pgdata: root.join("postgres"), socket_dir, run_as, owns_server: false })
    }

    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Runs `initdb` unless the cluster already exists. Returns true when it created one.
    pub fn ensure_initialized(&self) -> Result<bool, ClusterError> {
        if self.pgdata.join("PG_VERSION").is_file() {
            return Ok(false);
        }
        self.make_private_dir(&self.pgdata)?;
        let out = self
            .tool("initdb")?
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-U", ROLE, "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"])
            .output()
            .context("cannot run initdb")?;
        check(&out, "initdb")?;
        let conf = self.pgdata.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).context("cannot read postgresql.conf")?;
        text.push_str("\n# Added by gatehouse dev: socket location and listen settings.\ninclude_if_exists = 'gatehouse.conf'\n");
        fs::write(&conf, text).context("cannot write postgresql.conf")?;
        Ok(true)
    }

    /// Starts the server (or adopts one already running on this data folder) and waits for it.
    pub fn start(&mut self) -> Result<(), ClusterError> {
        if self.is_running()? {
            tracing::info!(pgdata = %self.pgdata.display(), "reusing the PostgreSQL server already running on this data folder");
            self.owns_server = true;
            return Ok(());
        }
        self.make_private_dir(&self.socket_dir)?;
        let quoted = self.socket_dir.display().to_string().replace('\'', "''");
        fs::write(
            self.pgdata.join("gatehouse.conf"),
            format!("listen_addresses = ''\nunix_socket_directories = '{quoted}'\nport = {PORT}\n"),
        )
        .context("cannot write gatehouse.conf")?;
        let out = self
            .tool("pg_ctl")?
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(self.pgdata.join("server.log"))
            .args(["-w", "-t", "60", "-s", "start"])
            .output()
            .context("cannot run pg_ctl start")?;
        check(&out, "pg_ctl start")
            .with_context(|| format!("PostgreSQL did not start; see {}", self.pgdata.join("server.log").display()))?;
        self.owns_server = true;
        Ok(())
    }

    /// Fast shutdown (disconnects clients, then a clean checkpoint). A no-op when not running.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        self.owns_server = false;
        if !self.is_running()? {
            return Ok(());
        }
        let out = self
            .tool("pg_ctl")?
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t", "60", "-s", "stop"])
            .output()
            .context("cannot run pg_ctl stop")?;
        check(&out, "pg_ctl stop")?;
        Ok(())
    }

    pub fn is_running(&self) -> Result<bool, ClusterError> {
        if !self.pgdata.join("PG_VERSION").is_file() {
            return Ok(false);
        }
        let out = self.tool("pg_ctl")?.arg("-D").arg(&self.pgdata).arg("status").output().context("cannot run pg_ctl status")?;
        // pg_ctl status: 0 = running, 3 = not running, 4 = no accessible data directory.
        Ok(out.status.code() == Some(0))
    }

    /// libpq URL for `database` over the unix socket.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://{ROLE}@/{database}?host={}&port={PORT}", percent_encode_path(&self.socket_dir.display().to_string()))
    }

    pub fn create_database_if_missing(&self, name: &str) -> Result<(), ClusterError> {
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = Text)]
            #[allow(dead_code)]
            datname: String,
        }
        let mut conn = PgConnection::establish(&self.url("postgres")).context("cannot connect to the private cluster")?;
        let found = diesel::sql_query("SELECT datname::text AS datname FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(name)
            .load::<Found>(&mut conn)
            .context("cannot list databases")?;
        if found.is_empty() {
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(anyhow::anyhow!("database name `{name}` must be letters, digits and underscores").into());
            }
            diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).context("cannot create the database")?;
        }
        Ok(())
    }

    fn tool(&self, name: &str) -> Result<Command, ClusterError> {
        let program = self.bin_dir.join(name);
        let mut cmd = match &self.run_as {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // The postgres user may not be able to enter our working directory.
        cmd.current_dir("/");
        Ok(cmd)
    }

    /// Creates `dir` (mode 0700) owned by whoever runs the PostgreSQL tools, and checks that
    /// they can reach it (a data folder under /root is not reachable by `postgres`).
    fn make_private_dir(&self, dir: &Path) -> Result<(), ClusterError> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).with_context(|| format!("cannot chmod {}", dir.display()))?;
        if let Some(run_as) = &self.run_as {
            nix::unistd::chown(dir, Some(run_as.uid), Some(run_as.gid))
                .with_context(|| format!("cannot give {} to the postgres user", dir.display()))?;
            let reachable = Command::new("runuser")
                .args(["-u", "postgres", "--", "test", "-w"])
                .arg(dir)
                .current_dir("/")
                .status()
                .context("cannot run runuser")?
                .success();
            if !reachable {
                return Err(anyhow::anyhow!(
                    "the postgres system user cannot reach {} (a parent folder is private to root); \
                     choose a --data-dir it can traverse, e.g. --data-dir /var/tmp/gatehouse",
                    dir.display()
                )
                .into());
            }
        }
        Ok(())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.owns_server {
            match self.stop() {
                Ok(()) => {
                    tracing::info!(pgdata = %self.pgdata.display(), "private PostgreSQL stopped")
                }
                Err(e) => tracing::error!(error = %e, "could not stop the private PostgreSQL"),
            }
        }
    }
}

fn check(out: &Output, what: &str) -> anyhow::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    bail!("{what} failed ({}): {}{}", out.status, stderr.trim(), stdout.trim())
}

/// Percent-encodes a filesystem path for a URL query value, keeping `/` readable.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_socket_paths() {
        assert_eq!(percent_encode_path("/tmp/a b/run"), "/tmp/a%20b/run");
        assert_eq!(percent_encode_path("/x&y=z"), "/x%26y%3Dz");
    }
}
