#!/usr/bin/env python3
"""Drives the admin dashboard in headless Chromium (Debian's `chromium` and `chromium-driver`,
through selenium) against a real `gatehouse dev`, as a person would use it:

  a tenant admin signs in, creates an API key, copies it from the page, calls /v1/models and a
  chat completion with it, sees the request on the usage page, downloads the CSV export, revokes
  the key (which then gets 401) and signs out; then the operator signs in and drains a worker;
  then a person signs in through single sign-on at tests/oidc/provider.py (a small OpenID
  Connect provider started beside dev) and lands on their tenant's overview. On a 390 px wide
  window no page is wider than the window.

Screenshots of the overview, API keys and usage pages go to --screenshots (docs/screenshots
holds the committed ones: `--screenshots docs/screenshots` refreshes them).

    .venv-conf/bin/python tests/browser/dashboard_flow.py --gatehouse target/debug/gatehouse \
        [--screenshots DIR] [--chromium /usr/bin/chromium] [--chromedriver /usr/bin/chromedriver]

Exits 0 when every step passed; 1 with the failing step, the page's URL and the end of dev's log.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "readme"))
from check_readme import Dev, free_port  # noqa: E402  (the README check's `gatehouse dev` runner)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

MODEL = "Qwen/Qwen2.5-7B-Instruct"
OIDC_CLIENT = ("gatehouse-dev", "browser-test-client-secret")
SSO_EMAIL = "sso-admin@demo.example"
ADMIN_EMAIL = "browser-admin@demo.example"
ADMIN_PASSWORD = "browser test password 1"


def http(method, url, key, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class DevWithEnv(Dev):
    """`gatehouse dev` with extra GATEHOUSE__… settings (Dev itself starts it with none)."""

    def __init__(self, binary, workdir, port, extra_env):
        # Dev drops inherited GATEHOUSE variables; a wrapper script sets these ones.
        wrapper = workdir / "gatehouse-with-env"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in extra_env.items())
        wrapper.write_text(f"#!/bin/sh\n{exports}exec {shlex.quote(str(binary))} \"$@\"\n")
        wrapper.chmod(0o755)
        super().__init__(str(wrapper), workdir, port)


def step(name):
    print(f"--> {name}", flush=True)


class Flow:
    def __init__(self, driver, base, shots):
        self.d = driver
        self.base = base
        self.shots = shots
        self.wait = WebDriverWait(driver, 15)

    def go(self, path):
        self.d.get(self.base + path)

    def shot(self, name):
        self.shots.mkdir(parents=True, exist_ok=True)
        self.d.save_screenshot(str(self.shots / f"{name}.png"))

    def field(self, name):
        return self.d.find_element(By.NAME, name)

    def sign_in(self, email, password):
        self.go("/admin/login")
        self.field("email").send_keys(email)
        self.field("password").send_keys(password)
        self.d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        self.wait.until(lambda d: "/admin/login" not in d.current_url)

    def sign_out(self):
        self.d.find_element(By.CSS_SELECTOR, "header form[action='/admin/logout'] button").click()
        self.wait.until(lambda d: d.current_url.endswith("/admin/login"))
        assert "You are signed out" in self.d.page_source

    def confirm(self):
        """Accepts the data-confirm prompt of admin.js (the page works without it too)."""
        self.wait.until(EC.alert_is_present()).accept()


def run(flow, base, downloads, dev_config):
    d = flow.d
    step("a tenant admin is created with gatehouse admin create --password-stdin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE") and k != "DATABASE_URL"}
    env["GATEHOUSE_CONFIG"] = str(dev_config)
    created = subprocess.run(
        [flow.binary, "admin", "create", "--tenant", "demo", "--email", ADMIN_EMAIL, "--password-stdin", "--json"],
        input=ADMIN_PASSWORD + "\n", env=env, capture_output=True, text=True, check=True,
    )
    tenant = json.loads(created.stdout)["tenant_id"]

    step("the tenant admin signs in and lands on the overview")
    flow.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert d.current_url.endswith(f"/admin/t/{tenant}"), d.current_url

    step("creates an API key and copies it from the page")
    flow.go(f"/admin/t/{tenant}/api-keys")
    flow.field("name").send_keys("browser test")
    for scope in ("chat:completions", "models:read"):
        d.find_element(By.CSS_SELECTOR, f"input[name=scopes][value='{scope}']").click()
    d.find_element(By.XPATH, "//button[text()='Create key']").click()
    key = flow.wait.until(EC.presence_of_element_located((By.ID, "shown-secret"))).text.strip()
    assert key.startswith("gth_live_"), key

    step("the key works against /v1/models and a chat completion")
    status, body = http("GET", f"{base}/v1/models", key)
    assert status == 200, (status, body)
    status, body = http("POST", f"{base}/v1/chat/completions", key, {"model": MODEL, "messages": [{"role": "user", "content": "Hello from the browser test"}], "max_tokens": 16})
    assert status == 200, (status, body)
    flow.go(f"/admin/t/{tenant}/api-keys")
    assert key not in d.page_source, "the key is shown only once"
    flow.shot("api-keys")

    step("the request shows on the usage page")
    deadline = time.time() + 20
    while True:
        flow.go(f"/admin/t/{tenant}/usage?group_by=model")
        if MODEL in d.page_source:
            break
        assert time.time() < deadline, "the request never showed on the usage page"
        time.sleep(0.5)  # usage is flushed to the rollups once a second
    assert d.find_elements(By.CSS_SELECTOR, "svg.chart")
    flow.shot("usage")

    step("downloads the CSV export")
    d.find_element(By.XPATH, "//button[text()='Download']").click()
    deadline = time.time() + 20
    while not [p for p in downloads.glob("usage-*.csv")]:
        assert time.time() < deadline, f"no CSV downloaded: {list(downloads.iterdir())}"
        time.sleep(0.2)  # Chromium writes the file, then renames it
    csv_text = next(downloads.glob("usage-*.csv")).read_text()
    assert MODEL in csv_text, csv_text

    step("the overview shows the usage")
    flow.go(f"/admin/t/{tenant}")
    assert d.find_elements(By.CSS_SELECTOR, "svg.chart") and MODEL in d.page_source
    flow.shot("overview")

    step("on a narrow screen (390 px) no page is wider than the window")
    d.set_window_size(390, 844)
    for path in (f"/admin/t/{tenant}", f"/admin/t/{tenant}/api-keys", f"/admin/t/{tenant}/usage", f"/admin/t/{tenant}/clients", f"/admin/t/{tenant}/audit"):
        flow.go(path)
        width, inner = d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"{path} is {width} px wide in a {inner} px window"
    d.set_window_size(1280, 1000)

    step("revokes the key, which then gets 401, and signs out")
    flow.go(f"/admin/t/{tenant}/api-keys")
    d.find_element(By.XPATH, "//tr[td[text()='browser test']]//button[text()='Revoke']").click()
    flow.confirm()
    flow.wait.until(lambda d: "revoked." in d.page_source)
    status, _ = http("GET", f"{base}/v1/models", key)
    assert status == 401, status
    flow.sign_out()

    step("the operator signs in and drains a worker")
    operator = re.search(r"sign in as (\S+), password (\S+)\)", "\n".join(flow.banner))
    assert operator, "the dev banner names the operator's login"
    flow.sign_in(operator.group(1), operator.group(2))
    flow.go("/admin/pools")
    d.find_element(By.XPATH, "//button[text()='Drain']").click()
    flow.confirm()
    flow.wait.until(lambda d: "is draining." in d.page_source)
    flow.sign_out()

    step("a person signs in through single sign-on and lands on their tenant's overview")
    flow.go("/admin/login")
    d.find_element(By.LINK_TEXT, "Sign in with single sign-on").click()
    flow.wait.until(lambda d: f"/admin/t/{tenant}" in d.current_url)
    assert SSO_EMAIL in d.page_source, "signed in as the provider's person"
    flow.sign_out()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gatehouse", default="target/debug/gatehouse")
    ap.add_argument("--screenshots", default=None)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args()
    binary = str(Path(args.gatehouse).resolve())
    with tempfile.TemporaryDirectory(prefix="gh-browser-") as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)  # the private PostgreSQL runs as the postgres user when we are root
        shots = Path(args.screenshots).resolve() if args.screenshots else tmp / "screenshots"
        downloads = tmp / "downloads"
        downloads.mkdir()
        oidc_port = free_port()
        provider = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parents[1] / "oidc" / "provider.py"), "--port", str(oidc_port),
             "--client-id", OIDC_CLIENT[0], "--client-secret", OIDC_CLIENT[1], "--email", SSO_EMAIL,
             "--claims", json.dumps({"gatehouse_tenant": "demo"})],
            stdout=subprocess.PIPE, text=True,
        )
        assert provider.stdout.readline().strip() == "ready", "the OIDC provider did not start"
        sso = {
            "GATEHOUSE__DASHBOARD__OIDC__ISSUER": f"http://127.0.0.1:{oidc_port}",
            "GATEHOUSE__DASHBOARD__OIDC__CLIENT_ID": OIDC_CLIENT[0],
            "GATEHOUSE__DASHBOARD__OIDC__CLIENT_SECRET": OIDC_CLIENT[1],
        }
        dev = DevWithEnv(binary, tmp, free_port(), sso)
        driver = None
        try:
            dev.wait_ready(300)
            options = Options()
            options.binary_location = args.chromium
            for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
                options.add_argument(flag)
            options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
            driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
            flow = Flow(driver, dev.base, shots)
            flow.binary = binary
            flow.banner = dev.banner
            run(flow, dev.base, downloads, dev.data_dir / "dev.toml")
            print(f"browser flow passed; screenshots in {shots}")
            return 0
        except Exception as e:  # report the step's failure with context, then clean up
            url = driver.current_url if driver else "-"
            print(f"FAILED: {type(e).__name__}: {e}\n  page: {url}\n--- gatehouse dev log (end) ---\n{dev.log_tail()}", file=sys.stderr)
            return 1
        finally:
            if driver:
                driver.quit()
            dev.stop()
            provider.kill()
            provider.wait()


if __name__ == "__main__":
    sys.exit(main())
