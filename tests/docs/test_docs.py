"""The documentation, executed: every shell command in README.md and in the code blocks of
docs/*.md runs, in document order, and every Python block runs as a program.

How a block counts as code is decided by its language only (tests/docs/docblocks.py): bash / sh
/ shell blocks are commands line by line, console blocks only on their `$ ` lines, python blocks
whole; json / csv / text / unlabelled blocks are examples and layouts, never run.

Each doc file gets one workspace (a temp folder, the working directory of its commands) holding
the GIVEN files below, and its commands run there in the order the file shows them, so "build an
index, then search it" works as written. Before running, the SUBSTITUTIONS table rewrites the
placeholders a reader would replace (their photo folder, a model download, a port); the table is
the complete list of differences between what the docs say and what runs. A command that cannot
run here is in NOT_RUNNABLE with the reason; an entry there that matches no command any more
fails `test_not_runnable_list_is_current`, so the list stays honest. Everything else runs, and
fails the test when it fails, when its documented JSON output does not have the shape the docs
show, or when its documented server does not become ready.

Servers (`clipsearch serve`, `clipsearch demo`) start in the background on a free port and must
turn /readyz 200; each stays up until the next server line of the same file (or the file's end),
and `curl` lines talk to it.

`pytest tests/docs -rA` ends with a summary: how many commands and blocks ran, and what was not
runnable, with the reasons.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.docblocks import (
    COMMAND_LANGS,
    PYTHON_LANGS,
    Block,
    Command,
    all_keys,
    commands_of,
    documented_keys,
    lenient_json,
    program_of,
    read_blocks,
    shape_mismatches,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# --- what runs instead of what the docs say ---
# (regex, replacement, why). Replacements may name {photos} {tiny_hf} {ws} {port}; applied in
# order to every command (matched against the text as documented, after the previous rows).
SUBSTITUTIONS: list[tuple[str, str, str]] = [
    (r"~/photos\b", "{photos}", "the reader's photo folder: the generated folder of real photos"),
    (
        r"hf:openai/clip-vit-base-patch32",
        "hf:{tiny_hf}",
        "no network: a tiny random CLIPModel saved with the same layout (tests/utils/tiny_models)",
    ),
    (r"(?<![\w/])/indexes/main\b", "{ws}/indexes/main", "the compose volume: a workspace copy"),
    (r"--port \d+", "--port {port}", "a free port instead of the documented one"),
    (
        r"^(.*\bclipsearch (?:serve|demo)\b(?!.*--port).*)$",
        r"\1 --port {port}",
        "servers documented on the default port 8000 get a free port",
    ),
    (r"\blocalhost:\d+", "localhost:{port}", "curl talks to the server started last in the file"),
    (
        r"^curl -s ",
        "curl -sS --fail-with-body --max-time 120 ",
        "an HTTP error status fails the command (curl -s alone exits 0 on a 4xx/5xx)",
    ),
    # sizes: the documented runs take minutes to hours; the same commands with fewer steps/items
    (r"--n 1500\b", "--n 64", "synthetic shapes: 64 training scenes keep the index build short"),
    (r"--steps 60 (.*)--warmup-steps 6\b", r"--steps 3 \1--warmup-steps 1", "3 steps, not 60"),
    (r"--steps 2000\b", "--steps 2", "2 steps of the (tiny) hf model, not 2000"),
    (r"--batch-size 256\b", "--batch-size 8", "8 rows in the example train.csv, not 256"),
    (r"--eval-every 250 --save-every 250\b", "--eval-every 1 --save-every 1", "within 2 steps"),
    (
        r"^(clipsearch train --train captions\.csv .*)$",
        r"\1 --steps 1 --batch-size 2",
        "the default 1000 steps × batch 64 of the README's fine-tune would take an hour on a CPU",
    ),
    (r"step_00000500\.pt", "step_00000001.pt", "run.yaml below saves each of its 2 steps"),
    (r"--nproc_per_node 8\b", "--nproc_per_node 2", "2 gloo processes on a 2-core machine, not 8"),
    (r"IVF4096,SQ8", "IVF2,SQ8", "4096 lists cannot be trained on the 5-photo corpus"),
    (r"--nlist 65536 --shards 16\b", "--nlist 4 --shards 2", "the 54-image demo index"),
]

# --- commands that cannot run here ---
# An exact command as documented (continuations joined, comments dropped), or a prefix ending in
# "…" (matches every command that starts with the rest); "…@docs/x.md" only in that file;
# "python: <line>" names the Python block holding that line. → why it cannot run on this machine.
NETWORK = "downloads model weights from the Hugging Face hub (no network on the test machines)"
NOT_RUNNABLE: dict[str, str] = {
    "make run": "installs into the repository's .venv, then serves forever from the repository "
    "root; its serving part, `clipsearch demo`, is run below (README.md)",
    "make test": "the whole test suite, this test included (recursion; ~15 min)",
    "make bench": "the full benchmark suite (< 15 min on 2 idle cores); tests/test_benchmark_suite"
    ".py checks its plumbing",
    ".venv/bin/python -m benchmarks.…": "benchmark: minutes of CPU each, and timings are "
    "meaningless on cores shared with the test suite; each module's flags are checked against "
    "its --help",
    "make bench-gpu": "needs a CUDA GPU (none on the test machines); tests/test_gpu_check.py "
    "runs the same script's --dry-run",
    "bash scripts/gpu_check.sh --download": "downloads ~26 MB of wheels into the checkout's .whl/",
    "OUT=/tmp/gpu-out bash scripts/gpu_check.sh": "needs a CUDA GPU (it checks for one first); "
    "tests/test_gpu_check.py runs the check's --dry-run",
    "docker …": "no container engine on the test machines (scripts/container_smoke.sh runs the "
    "image and the compose stack with podman, outside the test suite)",
    "podman build …": "builds the image from a local wheelhouse: ~12 min and 7 GB "
    "(scripts/container_smoke.sh)",
    'curl -s localhost:8000/search -H \'content-type: application/json\' -d \'{"text": "a cat", '
    '"k": 5}\'@docs/deploy.md': "talks to the compose stack the `docker compose up` line starts",
    "ray start …": "starts Ray daemons that outlive the command (and a cluster of several "
    "machines); tests/deploy/test_ray_engine.py runs a real two-node local cluster",
    "clipsearch index build /shared/images --index /shared/indexes/main --engine ray …": "joins "
    "the Ray cluster of several machines started above (HEAD:6379); the flags are parse-checked",
    "torchrun --standalone --nproc_per_node 8 …": "8 GPUs (NCCL); DDP on CPU is run from "
    "docs/training.md with 2 gloo processes; the flags are parse-checked",
    "torchrun --nnodes 2 …": "two machines with 8 GPUs each (c10d rendezvous at MASTER:29500); "
    "the flags are parse-checked",
    # docs/models.md: hub models (weights downloaded once, then cached; no network here)
    "clipsearch model info --model ViT-B/32": NETWORK,
    "clipsearch index build ~/photos --index idx-b32 --model ViT-B/32": NETWORK,
    "clipsearch serve --index idx-b32": "serves the index of the ViT-B/32 line above (network)",
    "clipsearch index build ~/photos --index idx-siglip2 --model open_clip:…": NETWORK,
    'clipsearch classify cat.jpg --labels "eine Katze,ein Hund" --model open_clip:…': NETWORK,
    "clipsearch train --train captions.csv --val val.csv --out runs/b32-lit --init ViT-B/32 …": (
        NETWORK
    ),
    "clipsearch index build ~/photos --index idx-ft --model runs/b32-lit": "indexes with the "
    "model the ViT-B/32 fine-tune above writes (network)",
    "clipsearch eval --model ViT-B/32 --data flickr30k/…": "Flickr30k (images and Karpathy's "
    "split file) and the ViT-B/32 weights: downloads",
    # a Python block is named by one of its lines: "python: <line>"
    'python: model, preprocess = clip.load("ViT-B/32", device="cpu")': NETWORK,
}

# --- files and environment every workspace starts with ---
GIVEN_FILES = {
    "photos/": "scikit-image's sample photos: cat, coffee, rocket, astronaut, camera (.jpg)",
    "cat.jpg": "the cat photo (chelsea)",
    "query.jpg": "the coffee photo",
    "photo.jpg": "the astronaut photo",
    "dog.jpg": "the rocket photo (scikit-image has no dog; any real photo does)",
    "captions.csv": "image,caption: two captions for each of photos/*",
    "train.csv": "= captions.csv",
    "val.csv": "image,caption,label: one caption and a label per photo",
    "list.csv": "path,caption,color: a manifest of three of the photos",
    "labels.txt": "six labels, one per line",
    "run.yaml": "a 2-step LiT fine-tune of the starter on train.csv (batch 4, saved every step)",
    "my-index/": "the demo corpus' index (54 captioned images, texts added; `clipsearch demo "
    "--no-serve` builds it once per session)",
    "indexes/main/": "another copy of it (docs/deploy.md's compose volume)",
    ".env.example": "copied from the repository",
}
GIVEN_ENV = {"ADMIN_KEY": "docs-admin-key"}  # docs/api.md: `-H "X-API-Key: $ADMIN_KEY"`

CAPTIONS = {
    "cat": ("a cat lying on a sofa", "a tabby cat"),
    "coffee": ("a cup of coffee on a table", "coffee in a white cup"),
    "rocket": ("a rocket on the launch pad", "a space rocket"),
    "astronaut": ("an astronaut in a space suit", "a portrait of an astronaut"),
    "camera": ("a man with a camera", "a black and white photo of a photographer"),
}
LABELS = ["a cat", "a dog", "a cup of coffee", "a rocket", "an astronaut", "a camera"]
RUN_YAML = """\
train: train.csv
val: val.csv
init: starter
image_head: linear
lock_image: true
steps: 2
batch_size: 4
lr: 1.0e-3
warmup_steps: 1
save_every: 1
keep_checkpoints: 2
workers: 0
"""

COMMAND_TIMEOUT_S = 600
READY_TIMEOUT_S = 300


# --- reading the docs ---


def _all_blocks() -> list[Block]:
    return [b for doc in DOCS for b in read_blocks(doc, REPO)]


def _all_commands() -> list[Command]:
    return [c for b in _all_blocks() for c in commands_of(b)]


def not_runnable_reason(cmd: Command | Block) -> str | None:
    for key, reason in NOT_RUNNABLE.items():
        if _matches(key, cmd):
            return reason
    return None


def _matches(key: str, cmd: Command | Block) -> bool:
    if isinstance(cmd, Block):
        return key.startswith("python: ") and key[len("python: ") :] in map(str.strip, cmd.lines)
    if key.startswith("python: "):
        return False
    if re.search(r"@[\w/.-]+\.md$", key):  # "command@docs/file.md": only in that file
        key, doc = key.rsplit("@", 1)
        if doc != cmd.doc:
            return False
    if key.endswith("…"):
        return cmd.text.startswith(key[:-1])
    return cmd.text == key


def _cases() -> list:
    cases = []
    for block in _all_blocks():
        if block.lang in PYTHON_LANGS:
            reason = not_runnable_reason(block)
            marks = [pytest.mark.skip(reason=f"not runnable: {reason}")] if reason else []
            cases.append(pytest.param(block, id=f"{block.doc}:{block.line}", marks=marks))
        for cmd in commands_of(block):
            reason = not_runnable_reason(cmd)
            marks = [pytest.mark.skip(reason=f"not runnable: {reason}")] if reason else []
            cases.append(pytest.param(cmd, id=cmd.id, marks=marks))
    return cases


CASES = _cases()
# after a file's last runnable case its server (if any) is stopped
LAST_CASE_OF_DOC = {p.values[0].doc: p.id for p in CASES if not p.marks}


# --- workspaces ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(ws: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPSEARCH_")}
    # the starter model cache is shared with the rest of the suite (built once; tests/conftest.py)
    env["CLIPSEARCH_CACHE"] = os.environ["CLIPSEARCH_CACHE"]
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    env.update(GIVEN_ENV)
    return env


def _run(args, cwd: Path, env: dict, timeout: float = COMMAND_TIMEOUT_S, shell=False):
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, shell=shell,
        executable="/bin/bash" if shell else None,
    )  # fmt: skip


@pytest.fixture(scope="session")
def given(tmp_path_factory):
    """The given files, made once; each workspace gets its own copy."""
    from tests.utils.images import SAMPLE_PHOTOS, write_sample_photos

    root = tmp_path_factory.mktemp("docs-given")
    src = root / "files"
    write_sample_photos(src / "photos")
    copies = {"cat": "cat", "query": "coffee", "photo": "astronaut", "dog": "rocket"}
    for name, photo in copies.items():
        shutil.copy(src / "photos" / f"{photo}.jpg", src / f"{name}.jpg")
    rows = [f"photos/{n}.jpg,{c}" for n in SAMPLE_PHOTOS for c in CAPTIONS[n]]
    (src / "captions.csv").write_text("image,caption\n" + "\n".join(rows) + "\n")
    shutil.copy(src / "captions.csv", src / "train.csv")
    rows = [f"photos/{n}.jpg,{CAPTIONS[n][0]},{n}" for n in SAMPLE_PHOTOS]
    (src / "val.csv").write_text("image,caption,label\n" + "\n".join(rows) + "\n")
    (src / "list.csv").write_text(
        "path,caption,color\nphotos/cat.jpg,a cat on a sofa,orange\n"
        "photos/coffee.jpg,a cup of coffee,brown\nphotos/rocket.jpg,a red rocket,red\n"
    )
    (src / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (src / "run.yaml").write_text(RUN_YAML)
    shutil.copy(REPO / ".env.example", src / ".env.example")

    from tests.utils.tiny_models import make_tiny_hf_clip

    tiny_hf = make_tiny_hf_clip(root / "tiny_hf_clip")
    demo = root / "demo"
    r = _run(["clipsearch", "demo", "--no-serve", "--dir", str(demo)], root, _env(root))
    assert r.returncode == 0, f"building the demo index for my-index/ failed:\n{r.stderr[-3000:]}"
    shutil.copytree(demo / "index", src / "my-index")
    shutil.copytree(demo / "index", src / "indexes" / "main")
    made = {p.name for p in src.iterdir()}
    assert made == {k.split("/")[0] for k in GIVEN_FILES}, "GIVEN_FILES must list what is given"
    return {"files": src, "tiny_hf": tiny_hf}


@dataclass
class Workspace:
    doc: str
    path: Path
    env: dict
    context: dict
    server: subprocess.Popen | None = None
    server_port: int | None = None
    server_log: Path | None = None

    def stop_server(self) -> None:
        if self.server is None:
            return
        try:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(timeout=10)
        self.server = None


@pytest.fixture(scope="session")
def workspaces(given, tmp_path_factory):
    spaces: dict[str, Workspace] = {}

    def get(doc: str) -> Workspace:
        if doc not in spaces:
            ws = tmp_path_factory.mktemp("docs-" + re.sub(r"\W", "-", doc))
            shutil.copytree(given["files"], ws, dirs_exist_ok=True)
            context = {"photos": str(ws / "photos"), "tiny_hf": str(given["tiny_hf"])}
            context["ws"] = str(ws)
            spaces[doc] = Workspace(doc, ws, _env(ws), context)
        return spaces[doc]

    yield get
    for ws in spaces.values():
        ws.stop_server()


def substitute(text: str, context: dict) -> str:
    for pattern, replacement, _why in SUBSTITUTIONS:
        repl = replacement.format(**context) if "{" in replacement else replacement
        text = re.sub(pattern, lambda m, r=repl: m.expand(r), text)
    return text


def _is_server(text: str) -> bool:
    words = program_of(text)
    return (
        words[:2] in (["clipsearch", "serve"], ["clipsearch", "demo"]) and "--no-serve" not in words
    )


def _tail(s: str, n: int = 4000) -> str:
    return s if len(s) <= n else "…" + s[-n:]


def _report(cmd_id: str, documented: str, ran: str, r=None, extra: str = "") -> str:
    out = [f"{cmd_id}: {extra}".rstrip(), f"  documented: {documented}", f"  ran:        {ran}"]
    if r is not None:
        out += [f"  exit code:  {r.returncode}", "  --- stdout (tail) ---", _tail(r.stdout, 2000),
                "  --- stderr (tail) ---", _tail(r.stderr)]  # fmt: skip
    return "\n".join(out)


def _wait_ready(ws: Workspace, port: int, cmd: Command, ran: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if ws.server.poll() is not None:
            log = ws.server_log.read_text(errors="replace")
            pytest.fail(
                _report(cmd.id, cmd.text, ran, extra=f"server exited ({ws.server.returncode})")
                + "\n  --- server log (tail) ---\n"
                + _tail(log)
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as e:
            last = f"/readyz {e.code}: {e.read()[:300]!r}"
        except (OSError, urllib.error.URLError) as e:
            last = repr(e)
        time.sleep(0.5)
    log = ws.server_log.read_text(errors="replace")
    pytest.fail(
        _report(cmd.id, cmd.text, ran, extra=f"/readyz not 200 after {READY_TIMEOUT_S} s ({last})")
        + "\n  --- server log (tail) ---\n"
        + _tail(log)
    )


def _check_documented_output(cmd: Command, ran: str, r) -> None:
    if not cmd.expected:
        return
    try:
        actual = json.loads(r.stdout)
    except ValueError:
        pytest.fail(_report(cmd.id, cmd.text, ran, r, "the docs show JSON output; got none"))
    doc = lenient_json(cmd.expected)
    if doc is not None:
        problems = shape_mismatches(doc, actual)
    else:
        missing = sorted(set(documented_keys(cmd.expected)) - all_keys(actual))
        problems = [f"keys the docs show but the output lacks: {missing}"] if missing else []
    if problems:
        pytest.fail(
            _report(cmd.id, cmd.text, ran, r, "output does not have the documented shape")
            + "\n  documented output: "
            + cmd.expected.strip()
            + "\n  "
            + "\n  ".join(problems[:10])
        )


@pytest.mark.parametrize("case", CASES)
def test_doc(case, workspaces, request):
    ws = workspaces(case.doc)
    try:
        if isinstance(case, Block):
            _run_python(case, ws)
        else:
            _run_command(case, ws)
    finally:
        if LAST_CASE_OF_DOC[case.doc] == request.node.callspec.id:
            ws.stop_server()


def _run_python(block: Block, ws: Workspace) -> None:
    script = ws.path / f"_docblock_{Path(block.doc).stem}_{block.line}.py"
    script.write_text(block.text)
    r = _run([str(VENV_BIN / "python"), script.name], ws.path, ws.env)
    assert r.returncode == 0, _report(
        f"{block.doc}:{block.line}", f"python block ({len(block.lines)} lines)", script.name, r
    )


def _run_command(cmd: Command, ws: Workspace) -> None:
    if _is_server(cmd.text):
        ws.stop_server()  # one server per file at a time
        port = _free_port()
        ran = substitute(cmd.text, {**ws.context, "port": port})
        ws.server_log = ws.path / f"_server_{cmd.line}.log"
        with open(ws.server_log, "w") as log:
            ws.server = subprocess.Popen(
                ["/bin/bash", "-c", ran], cwd=ws.path, env=ws.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        ws.server_port = port
        _wait_ready(ws, port, cmd, ran)
        return
    needs_server = program_of(cmd.text)[:1] == ["curl"]
    if needs_server and ws.server is None:
        pytest.fail(f"{cmd.id}: `{cmd.text}` needs a server, and none was started before it")
    ran = substitute(cmd.text, {**ws.context, "port": ws.server_port or 0})
    try:
        r = _run(ran, ws.path, ws.env, shell=True)
    except subprocess.TimeoutExpired:
        pytest.fail(_report(cmd.id, cmd.text, ran, extra=f"timed out after {COMMAND_TIMEOUT_S} s"))
    assert r.returncode == 0, _report(cmd.id, cmd.text, ran, r)
    _check_documented_output(cmd, ran, r)


# --- the lists stay honest ---


def test_not_runnable_list_is_current():
    cmds = _all_commands() + [b for b in _all_blocks() if b.lang in PYTHON_LANGS]
    stale = [k for k in NOT_RUNNABLE if not any(_matches(k, c) for c in cmds)]
    assert not stale, f"NOT_RUNNABLE entries that match no documented command any more: {stale}"


def test_every_substitution_is_used():
    cmds = _all_commands()
    unused = []
    for pattern, _repl, why in SUBSTITUTIONS:
        if not any(re.search(pattern, c.text) for c in cmds if not not_runnable_reason(c)):
            unused.append((pattern, why))
    assert not unused, f"SUBSTITUTIONS rows that match no runnable command: {unused}"


def test_every_code_block_is_classified():
    """A block in a language this test does not know would be silently ignored: name it here."""
    examples = {"json", "csv", "text", "", "yaml", "toml", "ini", "http"}
    unknown = [
        f"{b.doc}:{b.line} ```{b.lang}"
        for b in _all_blocks()
        if b.lang not in COMMAND_LANGS | PYTHON_LANGS | examples
    ]
    assert not unknown, f"code blocks of an unknown language (add it to a list): {unknown}"


def _clipsearch_argv(text: str) -> list[str] | None:
    words = shlex.split(text)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]
    if words[:1] == ["clipsearch"]:
        return words[1:]
    if words[:1] == ["torchrun"] and "-m" in words:
        i = words.index("-m")
        if words[i + 1] == "app.cli":
            return words[i + 2 :]
    return None


def test_not_runnable_commands_still_match_the_code():
    """What cannot run is still checked: clipsearch (and torchrun … -m app.cli) arguments parse,
    `make` targets exist, benchmark modules exist and take every flag the docs give them."""
    from app.cli import build_parser

    problems = []
    help_cache: dict[str, str] = {}
    for cmd in _all_commands():
        if not not_runnable_reason(cmd):
            continue
        argv = _clipsearch_argv(cmd.text)
        words = shlex.split(cmd.text)
        if argv is not None:
            try:
                build_parser().parse_args(argv)
            except SystemExit:
                problems.append(f"{cmd.id}: clipsearch does not accept {argv}")
        elif words[0] == "make":
            makefile = (REPO / "Makefile").read_text()
            if not re.search(rf"^{re.escape(words[1])}:", makefile, re.M):
                problems.append(f"{cmd.id}: no make target {words[1]!r}")
        elif len(words) > 2 and words[1] == "-m" and words[2].startswith("benchmarks."):
            module = words[2]
            if module not in help_cache:
                r = _run([str(VENV_BIN / "python"), "-m", module, "--help"], REPO, _env(REPO), 300)
                help_cache[module] = r.stdout if r.returncode == 0 else ""
                if r.returncode:
                    problems.append(f"{cmd.id}: {module} --help failed: {_tail(r.stderr, 500)}")
            for flag in (w.split("=")[0] for w in words[3:] if w.startswith("--")):
                if help_cache[module] and flag not in help_cache[module]:
                    problems.append(f"{cmd.id}: {module} has no {flag}")
    assert not problems, "\n".join(problems)


def summary() -> str:
    blocks = _all_blocks()
    cmds = _all_commands()
    python = [b for b in blocks if b.lang in PYTHON_LANGS and not not_runnable_reason(b)]
    skipped = [(c, not_runnable_reason(c)) for c in cmds if not_runnable_reason(c)]
    skipped += [(b, not_runnable_reason(b)) for b in blocks if b.lang in PYTHON_LANGS]
    skipped = [(c, r) for c, r in skipped if r]
    examples = [b for b in blocks if b.lang not in COMMAND_LANGS | PYTHON_LANGS]
    lines = [
        f"docs: {len(cmds) - sum(isinstance(c, Command) for c, _ in skipped)} commands + "
        f"{len(python)} Python blocks run; {len(skipped)} commands/blocks not runnable; "
        f"{len(examples)} example/layout blocks not code",
    ]
    by_reason: dict[str, list[str]] = {}
    for c, reason in skipped:
        by_reason.setdefault(reason, []).append(
            c.id if isinstance(c, Command) else f"{c.doc}:{c.line}"
        )
    for reason, ids in by_reason.items():
        lines.append(f"  not runnable ({len(ids)}): {reason}: {', '.join(ids)}")
    return "\n".join(lines)


def test_summary(capsys):
    text = summary()
    with capsys.disabled():
        print("\n" + text)
    assert text


def test_every_server_setting_is_in_the_api_docs():
    """docs/api.md's configuration table names every Settings field (`CLIPSEARCH_X`, or `_Y` after
    another variable in the same cell), and nothing else."""
    from app.settings import ENV_PREFIX, Settings

    text = (REPO / "docs" / "api.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            cell = row.split("|")[1]
            documented |= {
                m.lower() for m in re.findall(rf"`(?:{ENV_PREFIX})?_?([A-Z0-9_]+)`", cell)
            }
    fields = set(Settings.model_fields)
    assert documented == fields, (
        f"settings missing from docs/api.md: {sorted(fields - documented)}; "
        f"documented but not settings: {sorted(documented - fields)}"
    )


def test_paths_named_in_the_docs_exist():
    """Files the docs name (`model/samples/demo.py`, links like [x](indexer.md)) exist: a moved
    file fails here instead of leaving a dead reference. Generated outputs (git-ignored) are
    exempt."""
    tops = {p.name for p in REPO.iterdir()} - {".git", ".venv"}
    missing = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            named = [t.split("::")[0].rstrip("/,.:") for t in re.findall(r"`([^`\s]+)`", line)]
            named = [t for t in named if "/" in t and t.split("/")[0] in tops]
            named = [t for t in named if not any(c in t for c in "<>*{}…$=")]
            links = [
                t.split("#")[0]
                for t in re.findall(r"\]\(([^)\s]+)\)", line)
                if not t.startswith(("http:", "https:", "#", "mailto:"))
            ]
            for rel, base in [(t, REPO) for t in named] + [(t, doc.parent) for t in links]:
                path = base / rel
                ignored = subprocess.run(
                    ["git", "check-ignore", "-q", str(path)], cwd=REPO, capture_output=True
                ).returncode == 0  # fmt: skip
                if not path.exists() and not ignored:
                    missing.append(f"{doc.relative_to(REPO)}:{n}: {rel}")
    assert not missing, "the docs name files that do not exist:\n" + "\n".join(missing)
