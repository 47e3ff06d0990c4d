"""Deriving a new version from the live one (an image→text corpus added, the index rebuilt on
disk): the live files are shared by hard link, a few are replaced, the manifest is carried over
with the changes, and the result is published like a build."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from ._fsutil import exclusive_lock
from .layout import MANIFEST, WORK
from .manifest import Manifest
from .publish import clean_staging, link_or_copy, new_version_id, publish, staging_dir
from .reader import IndexVersion, open_index

# make(live version, staging dir) writes the replaced files into staging and returns the
# manifest fields that change (e.g. {"texts_count": 3}).
MakeFiles = Callable[[IndexVersion, Path], dict[str, Any]]


def derive_version(index_dir: str | Path, replace: Collection[str], make: MakeFiles) -> Manifest:
    """Publish a copy of the live version whose files named in `replace` are written by `make`
    (under the index's lock). → the published manifest."""
    index_dir = Path(index_dir)
    with exclusive_lock(index_dir / WORK / "lock"):
        clean_staging(index_dir)
        live = open_index(index_dir)
        try:
            version = new_version_id()
            staging = staging_dir(index_dir, version)
            try:
                for p in live.path.iterdir():
                    if p.is_file() and p.name != MANIFEST and p.name not in replace:
                        link_or_copy(p, staging / p.name)
                manifest = live.manifest.derive(**make(live, staging))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        finally:
            live.close()
        return publish(index_dir, staging, version, manifest)
