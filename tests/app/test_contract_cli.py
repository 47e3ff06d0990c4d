"""The HTTP contract judged from outside: a real `clipsearch serve` process, and schemathesis's own
CLI in a separate process running every check (`--checks all`) against the OpenAPI document that
server publishes, once with no key configured and once with a key configured and sent. The one
allowance (415 for random bytes in file/base64 fields) is in tests/app/schemathesis.toml."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.cli._server import free_port, start, stop, wait_ready

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 60  # per operation: each run ~1,500 cases, about a minute on 2 busy cores
API_KEY = "contract-test-key-0123456789"


def run_schemathesis(base: str, tmp: Path, *args: str) -> tuple[int, str]:
    cmd = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
           "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "14",
           "--workers", "1", "--no-color", "--request-timeout", "30", *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def cases_run(output: str) -> int:
    m = re.search(r"(\d+) generated", output)
    return int(m.group(1)) if m else 0


@pytest.mark.slow
@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "key"])
def test_schemathesis_all_checks_pass_against_a_real_server(photo_index, tmp_path, keyed):
    port = free_port()
    env = {"CLIPSEARCH_API_KEY": API_KEY} if keyed else {"CLIPSEARCH_API_KEY": ""}
    proc = start(["serve", "--index", str(photo_index), "--port", str(port),
                  "--log-level", "warning"], cwd=tmp_path, env=env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        extra = ["--header", f"X-API-Key: {API_KEY}"] if keyed else []
        code, out = run_schemathesis(base, tmp_path, *extra)
    finally:
        stop(proc)
    print(out[-1500:])
    assert code == 0, out[-6000:]
    assert re.search(r"\b0 failures\b|passed", out), out[-3000:]
    assert cases_run(out) > 500, out[-2000:]  # it really ran every operation


def test_security_is_declared_only_with_a_key(photo_index, starter_encoder):
    from tests.app.conftest import make_client
    from tests.app.conftest import wait_ready as app_ready

    with make_client(photo_index, starter_encoder) as c:
        app_ready(c)
        spec = c.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    ops = [op for item in spec["paths"].values() for op in item.values()]
    assert not any("security" in op for op in ops)
    assert not any("401" in op["responses"] for op in ops)

    with make_client(photo_index, starter_encoder, api_key=API_KEY) as c:
        app_ready(c)
        spec = c.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
    for path, item in spec["paths"].items():
        for op in item.values():
            probe = path in ("/healthz", "/readyz")
            assert ("security" in op) != probe, path
            assert ("401" in op["responses"]) != probe, path


def test_every_schema_example_is_accepted(client):
    """What /docs offers to copy works: each request-body example answers 2xx."""
    spec = client.get("/openapi.json").json()
    posted = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            for name, ex in content.get("application/json", {}).get("examples", {}).items():
                r = client.request(method.upper(), path, json=ex["value"])
                assert r.is_success, (path, name, r.text)
                posted += 1
            for name, ex in content.get("multipart/form-data", {}).get("examples", {}).items():
                r = client.request(method.upper(), path, data=ex["value"])
                assert r.is_success, (path, name, r.text)
                posted += 1
    assert posted >= 12, posted


def test_document_follows_the_configuration(photo_index, starter_encoder):
    from tests.app.conftest import make_client
    from tests.app.conftest import wait_ready as app_ready

    with make_client(photo_index, starter_encoder, max_text_chars=77, max_labels=5) as c:
        app_ready(c)
        dim = c.get("/stats").json()["dim"]
        comps = c.get("/openapi.json").json()["components"]["schemas"]
    search = comps["SearchRequest"]
    assert search["properties"]["text"]["maxLength"] == 77
    assert search["properties"]["embedding"]["minItems"] == dim
    assert {tuple(b["required"]) for b in search["oneOf"]} == {
        ("text",),
        ("image_id",),
        ("image_b64",),
        ("embedding",),
        ("terms",),
    }
    assert comps["ClassifyRequest"]["properties"]["labels"]["oneOf"][0]["maxItems"] == 5
    assert comps["EmbedRequest"]["anyOf"]
    assert comps["SearchRequest"]["properties"]["image_b64"]["format"] == "byte"
