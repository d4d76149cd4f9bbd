//! What `gatehouse dev` tells its user once the server answers: the demo's values as `export`
//! lines in `<data-dir>/env.sh` (the README's examples source that file) and a banner on stdout,
//! printed after start-up so the start-up logs do not bury it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::sample::SAMPLE_TRANSCRIPT;
use super::{DEMO_ALIGNER_MODEL, DEMO_MODEL, DemoWorkers, Seeded};

/// File name of the `export` lines inside the data folder.
pub const ENV_FILE: &str = "env.sh";

/// Everything the banner and the env file show.
pub struct DevInfo<'a> {
    pub base: String,
    pub seeded: &'a Seeded,
    pub config_path: PathBuf,
    pub sample_path: PathBuf,
    pub workers: &'a DemoWorkers,
}

/// Quotes a value for a POSIX shell (single quotes unless it is plainly safe).
fn shell_quote(value: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/._-:@%+=,".contains(&b);
    if !value.is_empty() && value.bytes().all(plain) { value.to_owned() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}

/// The folder holding this `gatehouse` binary, for the PATH line.
fn binary_dir() -> Option<PathBuf> {
    std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf))
}

/// The `export` lines, in the order the README introduces them.
pub fn export_lines(info: &DevInfo<'_>) -> Vec<String> {
    let c = &info.seeded.credentials;
    let mut lines = Vec::new();
    if let Some(dir) = binary_dir() {
        lines.push(format!("export PATH={}:\"$PATH\"", shell_quote(&dir.display().to_string())));
    }
    let values = [
        ("GATEHOUSE_CONFIG", info.config_path.display().to_string()),
        ("GATEHOUSE_URL", info.base.clone()),
        ("CLIENT_ID", c.client_id.clone()),
        ("CLIENT_SECRET", c.client_secret.clone()),
        ("API_KEY", c.api_key.clone()),
        ("MGMT", c.management_token.clone()),
        ("TENANT_ID", info.seeded.tenant_id.clone()),
        ("SAMPLE_AUDIO", info.sample_path.display().to_string()),
    ];
    lines.extend(values.iter().map(|(name, value)| format!("export {name}={}", shell_quote(value))));
    lines
}

/// The env file's contents.
pub fn env_file(info: &DevInfo<'_>) -> String {
    let mut text = String::from(
        "# Written by `gatehouse dev` at every start: the demo's values for the README's examples.\n\
         # Load them into a shell with `source <this file>`. Development credentials only.\n",
    );
    for line in export_lines(info) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Waits (up to `limit`) until `GET {base}/healthz` answers 200, so the banner comes after the
/// server's start-up logs. Returns whether it answered.
pub async fn wait_until_answering(base: &str, limit: Duration) -> bool {
    // Dev may serve TLS with a self-signed certificate; this probe only asks whether it is up.
    let Ok(client) = reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(Duration::from_secs(2)).build() else {
        return false;
    };
    let started = Instant::now();
    while started.elapsed() < limit {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The banner: where dev runs, what it made, and the `export` lines.
pub fn render(info: &DevInfo<'_>, env_path: &Path) -> String {
    let c = &info.seeded.credentials;
    let llm_ports = info.workers.llm.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "\nGatehouse dev is running at {base}\
         \n  tenant:    Demo (slug {slug}, id {tenant})\
         \n  operator:  {email} (management token: $MGMT below)\
         \n  dashboard: {base}/admin/login (sign in as {email}, password {password})\
         \n  client:    {client_id} (OAuth2 client credentials)\
         \n  api key:   {api_key}\
         \n  models:    {model} (LLM worker SIMULATORS on ports {llm_ports})\
         \n             {aligner_model} (aligner SIMULATOR on port {aligner_port})\
         \n  sample:    {sample} (says \"{transcript}\" in tone bursts)\
         \n\nIn another terminal, load these values with `source {env}`:\n",
        base = info.base,
        slug = info.seeded.tenant_slug,
        tenant = info.seeded.tenant_id,
        email = c.email,
        password = c.password,
        client_id = c.client_id,
        api_key = c.api_key,
        model = DEMO_MODEL,
        aligner_model = DEMO_ALIGNER_MODEL,
        aligner_port = info.workers.aligner,
        sample = info.sample_path.display(),
        transcript = SAMPLE_TRANSCRIPT,
        env = shell_quote(&env_path.display().to_string()),
    );
    for line in export_lines(info) {
        text.push_str("  ");
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&format!(
        "\nThen try:\
         \n  curl -sS -H \"Authorization: Bearer $API_KEY\" {base}/v1/models\
         \n  gatehouse tenant list --json\
         \n\nPress Ctrl-C to stop (the private PostgreSQL stops with it).\n",
        base = info.base,
    ));
    text
}

pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("gth_test_abc"), "gth_test_abc");
        assert_eq!(shell_quote("/tmp/a b/env.sh"), "'/tmp/a b/env.sh'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("postgresql://x@/db?host=/run"), "'postgresql://x@/db?host=/run'");
    }
}
