"""The server's flags, derived from the fields of `app.settings.Settings`: one list, so a new
setting is a new flag of `serve` and `demo` without a second copy to keep in step."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any

from ._output import fail


def add_settings_args(parser: argparse.ArgumentParser, exclude: frozenset[str] = frozenset()):
    """One `--flag` per Settings field; its default None means "not given", so the
    environment (CLIPSEARCH_*) and then the field's own default apply."""
    from app.settings import ENV_PREFIX, Settings

    group = parser.add_argument_group(f"server settings (each also {ENV_PREFIX}<NAME>)")
    for name, field in Settings.model_fields.items():
        if name in exclude:
            continue
        flag = "--" + name.replace("_", "-")
        kind, choices = _arg_type(field.annotation)
        shown = _shown(field.default)
        default = f" (default: {shown})" if shown else ""
        help_ = f"{field.description}{default}"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=help_)  # fmt: skip
        elif kind is list:  # repeatable: --index photos=DIR --index products=DIR2
            group.add_argument(flag, action="append", default=None, metavar="[NAME=]DIR",
                               help=help_)  # fmt: skip
        else:
            metavar = None if choices else "DIR" if kind is Path else name.split("_")[-1].upper()
            group.add_argument(flag, type=kind, choices=choices, default=None,
                               metavar=metavar, help=help_)  # fmt: skip


def settings_from_args(args: argparse.Namespace, **fixed: Any):
    """Settings from the given flags (and `fixed` values), over the environment and defaults;
    an invalid value is the CLI's one-line error."""
    from pydantic import ValidationError

    from app.settings import Settings

    given = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        return Settings(**{**given, **fixed})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "settings"
        fail(f"invalid setting {where}: {err['msg']}")


def _arg_type(annotation: Any) -> tuple[type, tuple[str, ...] | None]:
    """The argparse type (and choices) of a field annotation such as `int | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is list:
        return list, None
    if typing.get_origin(annotation) is typing.Literal:
        return str, tuple(typing.get_args(annotation))
    if annotation in (bool, int, float, Path):
        return annotation, None
    return str, None  # str, SecretStr


def _shown(value: Any) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)
