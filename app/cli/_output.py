"""How the CLI talks to people: results on stdout, messages and errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def info(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit: the shape of every CLI error."""
    first = " ".join(str(message).split())  # one line, whatever the exception text held
    sys.stderr.write(f"clipsearch: error: {first}\n")
    raise SystemExit(code)


def bar(fraction: float, width: int = 30) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "·" * (width - filled)
