"""Reading the documentation's fenced code blocks: which are commands, which are Python, which are
neither (output, file layouts, JSON, CSV), and the JSON shapes the docs promise.

Which blocks are code is decided by the block's language, nothing else:

- ``bash`` / ``sh`` / ``shell``: every line is a command (``\\`` continuations joined, ``#``
  comments dropped; a trailing ``# {…}`` comment is the documented JSON output of that command);
- ``console``: only lines starting with ``$ `` are commands; the lines after one, up to the next
  ``$ ``, are its documented output;
- ``python`` / ``py``: the whole block is one program;
- anything else (``json``, ``csv``, ``text``, no language): an example or a layout, never run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_LANGS = frozenset({"bash", "sh", "shell", "console"})
PYTHON_LANGS = frozenset({"python", "py"})

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


@dataclass
class Block:
    doc: str  # path relative to the repository, e.g. "docs/indexer.md"
    line: int  # 1-based line of the first line inside the fence
    lang: str
    lines: list[str]  # the block's lines, the fence's indentation removed

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class Command:
    doc: str
    line: int  # 1-based line where the command starts
    text: str  # continuations joined, prompt and comments removed
    expected: str | None = None  # documented output (a `# {…}` comment or console output)
    block: Block | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def read_blocks(path: Path, repo: Path) -> list[Block]:
    blocks: list[Block] = []
    rel = path.relative_to(repo).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m["indent"]), m["fence"], m["lang"].lower()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            raw = lines[j]
            body.append(raw[indent:] if raw[:indent].strip() == "" else raw.lstrip())
            j += 1
        blocks.append(Block(rel, i + 2, lang, body))
        i = j + 1
    return blocks


def split_comment(line: str) -> tuple[str, str | None]:
    """`code  # comment` → ("code", "comment"), quote- and escape-aware as bash reads it."""
    quote = None
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and quote != "'":
            i += 2
            continue
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
        i += 1
    return line.rstrip(), None


def _json_comment(comment: str | None) -> str | None:
    return comment if comment and comment.lstrip().startswith("{") else None


def commands_of(block: Block) -> list[Command]:
    if block.lang not in COMMAND_LANGS:
        return []
    console = block.lang == "console"
    out: list[Command] = []
    pending: list[str] = []
    start = 0
    comment = None
    current: Command | None = None
    for n, raw in enumerate(block.lines):
        lineno = block.line + n
        if not pending:
            if console:
                if not raw.startswith("$ "):
                    if current is not None and raw.strip():  # documented output
                        current.expected = (current.expected or "") + raw + "\n"
                    continue
                raw = raw[2:]
            start = lineno
        code, comment = split_comment(raw)
        if code.endswith("\\"):
            pending.append(code[:-1].strip())
            continue
        pending.append(code.strip())
        text = " ".join(p for p in pending if p)
        pending = []
        if text:
            current = Command(block.doc, start, text, _json_comment(comment), block)
            out.append(current)
    return out


def program_of(command: str) -> list[str]:
    """The words after any leading `VAR=value` assignments (split on whitespace, unquoted)."""
    words = command.split()
    while words and _ENV_ASSIGN.match(words[0]):
        words = words[1:]
    return words


# --- documented JSON shapes ---------------------------------------------------------------------

_ELLIPSIS = r"(?:\.\.\.|…)"


def lenient_json(text: str):
    """Parse a documented JSON example in which `…`/`...` stand for "anything" / "and more".

    `[…]` → any list, `{…}` → any object, `, …` → more keys or items, `: …` → any value.
    Returns None if it still is not JSON."""
    t = text.strip()
    t = re.sub(r"\{\s*" + _ELLIPSIS + r"\s*\}", "{}", t)
    t = re.sub(r"\[\s*" + _ELLIPSIS + r"\s*\]", "[]", t)
    t = re.sub(r",\s*" + _ELLIPSIS + r"(?=\s*[\]}])", "", t)
    t = re.sub(r":\s*" + _ELLIPSIS, ": null", t)
    try:
        return json.loads(t)
    except ValueError:
        return None


def shape_mismatches(doc, actual, where: str = "$") -> list[str]:
    """How `actual` fails to have the documented shape `doc` (empty list: it has it).

    Every key the docs name must exist; types must agree (numbers, strings, lists, objects);
    a documented list's first element is the shape of every actual element; `null`, `[]` and
    `{}` in the docs stand for "anything of that kind"."""
    if doc is None:
        return []
    if isinstance(doc, dict):
        if not isinstance(actual, dict):
            return [f"{where}: docs show an object, got {type(actual).__name__}"]
        problems = []
        for key, sub in doc.items():
            if key not in actual:
                problems.append(f"{where}: docs show key {key!r}, output has {sorted(actual)}")
            else:
                problems += shape_mismatches(sub, actual[key], f"{where}.{key}")
        return problems
    if isinstance(doc, list):
        if not isinstance(actual, list):
            return [f"{where}: docs show a list, got {type(actual).__name__}"]
        if not doc:
            return []
        return [
            p for i, a in enumerate(actual) for p in shape_mismatches(doc[0], a, f"{where}[{i}]")
        ]
    if isinstance(doc, bool):
        return [] if isinstance(actual, bool) else [f"{where}: docs show a boolean, got {actual!r}"]
    if isinstance(doc, int | float):
        ok = isinstance(actual, int | float) and not isinstance(actual, bool)
        return [] if ok else [f"{where}: docs show a number, got {actual!r}"]
    if isinstance(doc, str):
        return [] if isinstance(actual, str) else [f"{where}: docs show a string, got {actual!r}"]
    return []


def documented_keys(text: str) -> list[str]:
    """Fallback for examples that are not JSON even leniently: the `"key":` names they show."""
    return re.findall(r'"([^"\\]+)"\s*:', text)


def all_keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in all_keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in all_keys(v)}
    return set()
