#!/usr/bin/env python3
"""Runs the README's examples against a real `gatehouse dev` and compares what they print with
what the README shows. Standard library only; run by ops/test.sh after the other tests.

    python3 tests/readme/check_readme.py [--gatehouse target/debug/gatehouse] [--python PY] [--keep]

What runs (the README's conventions, also described in docs/testing.md):
  ```console   every line starting with "$ " is a command (continued on the next line while a line
               ends with a backslash); the lines after it, up to the next "$ " line, are its output.
               Each command must exit 0 and print that output.
  ```python    run as a script with --python (it needs openai and requests); its output is the
               ```text block right after it, if there is one (else it must print nothing).
  ```sh and every other block: not run (starting dev, installing, the test command itself).

In expected output "…" stands for any text (also across lines); trailing spaces do not count.
The README's address http://127.0.0.1:8080 is replaced by the address dev really got.

How: starts `gatehouse dev --listen 127.0.0.1:<free port> --data-dir <tmp>/.gatehouse` (a private
PostgreSQL cluster, as a new user gets it), waits for its banner, then runs every example in
order in <tmp>, one bash process per command; exported variables carry over from one command to
the next (`source .gatehouse/env.sh` works as written). At the end, whatever happened, it stops
dev with SIGINT (which stops its PostgreSQL), makes sure the cluster is down, and removes <tmp>.
Exits 1 with a diff for every example whose output differs.
"""

import argparse
import difflib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_ADDRESS = "127.0.0.1:8080"
ELLIPSIS = "…"
README_NAME = "README.md"  # the file's name in messages (set from --readme)


class Example:
    def __init__(self, kind, code, expected, line):
        self.kind = kind  # "shell" or "python"
        self.code = code
        self.expected = expected
        self.line = line

    def title(self):
        first = self.code.strip().splitlines()[0] if self.code.strip() else ""
        return f"{README_NAME}:{self.line}: {first[:90]}"


def fenced_blocks(text):
    """(language, body, first body line, opening fence line, closing fence line) per fenced block."""
    blocks, lang, body, opened = [], None, [], 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if lang is None and stripped.startswith("```"):
            lang, body, opened = stripped[3:].strip() or "text", [], number
        elif lang is not None and stripped == "```":
            blocks.append((lang, "\n".join(body), opened + 1, opened, number))
            lang = None
        elif lang is not None:
            body.append(line)
    if lang is not None:
        sys.exit(f"{README_NAME}:{opened}: a ``` block is not closed")
    return blocks


def examples(text):
    lines = text.splitlines()
    blocks = fenced_blocks(text)
    found = []
    for index, (lang, body, start, _, closed) in enumerate(blocks):
        if lang == "console":
            found.extend(console_examples(body, start))
        elif lang == "python":
            expected = ""
            if index + 1 < len(blocks):
                next_lang, next_body, _, next_opened, _ = blocks[index + 1]
                # The output block must follow with nothing but blank lines in between.
                if next_lang == "text" and all(not line.strip() for line in lines[closed : next_opened - 1]):
                    expected = next_body
            found.append(Example("python", body, expected, start))
    return found


def console_examples(body, start):
    found, command, output, line_no, continued = [], None, [], 0, False
    for offset, line in enumerate(body.splitlines()):
        if continued:
            command.append(line)
            continued = line.rstrip().endswith("\\")
        elif line.startswith("$ "):
            if command is not None:
                found.append(Example("shell", "\n".join(command), "\n".join(output), line_no))
            command, output, line_no = [line[2:]], [], start + offset
            continued = line.rstrip().endswith("\\")
        elif command is None:
            if line.strip():
                sys.exit(f"{README_NAME}:{start + offset}: console output before any $ command")
        else:
            output.append(line)
    if command is not None:
        found.append(Example("shell", "\n".join(command), "\n".join(output), line_no))
    return found


def normalise(text):
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def matches(expected, actual):
    pattern = ".*?".join(re.escape(part) for part in normalise(expected).split(ELLIPSIS))
    return re.fullmatch(pattern, normalise(actual), re.DOTALL) is not None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dev:
    """`gatehouse dev` in a scratch folder; `stop()` always leaves nothing running."""

    def __init__(self, binary, workdir, port):
        self.data_dir = workdir / ".gatehouse"
        self.log_path = workdir / "dev.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE") and k not in ("DATABASE_URL", "RUST_LOG")}
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "dev", "--listen", f"127.0.0.1:{port}", "--data-dir", str(self.data_dir)],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.banner = []
        self.base = None

    def wait_ready(self, timeout_s):
        done = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.banner.append(line.rstrip("\n"))
                if line.startswith("Gatehouse dev is running at "):
                    self.base = line.split(" at ", 1)[1].strip()
                if line.startswith("Press Ctrl-C"):
                    done.set()
            done.set()

        threading.Thread(target=read, daemon=True).start()
        if not done.wait(timeout_s) or self.base is None:
            raise RuntimeError(f"gatehouse dev printed no banner within {timeout_s} s (exit status {self.proc.poll()})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # dev stops its cluster on SIGINT; if it could not, stop the postmaster directly (fast).
        pid_file = self.data_dir / "postgres" / "postmaster.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
                for _ in range(100):
                    if not pid_file.exists():
                        break
                    time.sleep(0.1)  # polling: the postmaster removes its pid file once stopped
            except (ValueError, ProcessLookupError, IndexError):
                pass
        return self.proc.returncode

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def run_example(example, workdir, state, python, base):
    host = base.split("://", 1)[1]
    code = example.code.replace(README_ADDRESS, host)
    if example.kind == "shell":
        script = f"set -eo pipefail\nsource {shq(state)}\n{code}\nexport -p > {shq(state)}\n"
        argv = ["bash", "-c", script]
    else:
        source = workdir / "example.py"
        source.write_text(code + "\n")
        argv = ["bash", "-c", f"source {shq(state)}\nexec {shq(python)} {shq(source)}"]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    return done.returncode, done.stdout + done.stderr, example.expected.replace(README_ADDRESS, host), seconds


def shq(value):
    return "'" + str(value).replace("'", "'\\''") + "'"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--gatehouse", default=str(ROOT / "target" / "debug" / "gatehouse"))
    default_python = ROOT / ".venv-conf" / "bin" / "python"
    parser.add_argument("--python", default=str(default_python) if default_python.exists() else "python3")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (and print its path)")
    args = parser.parse_args()

    global README_NAME
    README_NAME = Path(args.readme).name
    binary = Path(os.path.abspath(args.gatehouse))
    # abspath, not resolve: a virtualenv's python is a symlink that must stay one.
    python = os.path.abspath(args.python) if os.sep in args.python else args.python
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is missing: build it first (cargo build --locked)")
    text = Path(args.readme).read_text()
    todo = examples(text)
    if not todo:
        sys.exit("no runnable examples found in the README")

    # World-traversable, so the private cluster works when it runs as the postgres user (root).
    workdir = Path(tempfile.mkdtemp(prefix="gatehouse-readme-"))
    workdir.chmod(0o755)
    state = workdir / ".exports"
    state.write_text("")
    dev = Dev(binary, workdir, free_port())
    failures = []
    try:
        started = time.monotonic()
        dev.wait_ready(timeout_s=300)
        print(f"gatehouse dev answered at {dev.base} after {time.monotonic() - started:.1f} s; "
              f"running {len(todo)} examples from {args.readme}")
        for example in todo:
            status, actual, expected, seconds = run_example(example, workdir, state, python, dev.base)
            ok = status == 0 and matches(expected, actual)
            print(f"  {'ok  ' if ok else 'FAIL'} {seconds:5.1f} s  {example.title()}")
            if not ok:
                failures.append((example, status, expected, actual))
    except Exception as e:  # noqa: BLE001 - report anything, then clean up
        failures.append((None, None, "", f"{type(e).__name__}: {e}"))
    finally:
        status = dev.stop()
        if failures:
            print(f"\ngatehouse dev's log (last lines; exit status {status}):\n{dev.log_tail()}\n")
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    for example, status, expected, actual in failures:
        if example is None:
            print(f"FAILED before the examples ran: {actual}")
            continue
        print(f"\nFAILED {example.title()}")
        print("--- command ---\n" + example.code)
        if status != 0:
            print(f"--- exit status {status}")
        diff = difflib.unified_diff(
            normalise(expected).splitlines(), normalise(actual).splitlines(), "README shows", "it printed", lineterm=""
        )
        print("--- diff ('…' in the README matches any text) ---")
        print("\n".join(diff) or "(no line differs; check the exit status)")
    if failures:
        print(f"\n{len(failures)} of {len(todo)} README examples failed")
        return 1
    print(f"all {len(todo)} README examples print what the README shows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
