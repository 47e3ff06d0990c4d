"""The newcomer's first command, checked: run `make run` from this checkout, wait until the web
page and a text search answer on 127.0.0.1, then stop it. Standard library only (it runs before
the virtual environment exists); `.ci/run` calls it before `make test`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 40 * 60  # a first run installs torch and friends, then builds the demo index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(base: str) -> dict | None:
    """The search response once the page and POST /search both answer, else None."""
    try:
        with urllib.request.urlopen(base + "/", timeout=5) as r:
            if r.status != 200 or b"<html" not in r.read().lower():
                return None
        body = json.dumps({"text": "a cat", "k": 3}).encode()
        req = urllib.request.Request(
            base + "/search", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def stop(proc: subprocess.Popen) -> int:
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
    return proc.wait()


def main() -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"check: make run PORT={port}", flush=True)
    proc = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                print(f"check: make run exited with {proc.returncode} before serving", flush=True)
                return 1
            result = answers(base)
            if result is not None:
                hits = result.get("hits", [])
                print(f"check: page and POST /search answer ({len(hits)} hits)", flush=True)
                return 0 if hits else 1
            time.sleep(2)
        print(f"check: nothing answered on {base} within {TIMEOUT_S} s", flush=True)
        return 1
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main())
