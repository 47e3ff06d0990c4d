"""The `clipsearch` subcommands run as a user runs them: `main([...])` in-process, stdout for
results, one stderr line for errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli import main


@pytest.fixture()
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """cli("model", "info", ...) → (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    return run


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """A small shapes set (train.csv, heldout.csv, images/) from the samples package."""
    from model.samples.shapes import generate

    d = tmp_path_factory.mktemp("cli_shapes")
    generate(d, n=24, seed=3, n_heldout=8, side=32)
    return d
