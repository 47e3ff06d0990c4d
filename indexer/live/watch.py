"""Following a folder into a living index: each pass scans the corpus root and writes what
changed through the same write-ahead log as the HTTP writes. Created files are added, changed
ones re-encoded under their id, moved ones keep their id, deleted ones are deleted.

`FolderWatcher.run` makes a pass at start, then one after each burst of file-system events
(`watchfiles`: inotify, FSEvents, ReadDirectoryChangesW; polling only when asked, for folders
whose events do not arrive, e.g. network or some container mounts). A pass rescans the whole
folder (unchanged files are known by size and mtime, not re-hashed), so an event lost or
coalesced by the OS costs nothing but a later pass."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model import Encoder, ImageLoadError

from ..decode import _stored_size
from ..media import is_media_path
from ..scan import Entry, hash_entries, scan_folder
from .state import LiveIndex, NewImage

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    added: int = 0
    changed: int = 0
    moved: int = 0
    deleted: int = 0
    failed: int = 0

    def any(self) -> bool:
        return bool(self.added or self.changed or self.moved or self.deleted)


def _indexed_paths(live: LiveIndex) -> dict[str, tuple[int, str]]:
    """Corpus-relative path → (id, sha256) of every visible item (uploads excluded)."""
    view = live.view()
    out = {}
    for r in view.base.rows():
        item = view.get_item(int(r["id"]))
        if item is not None and not view.in_delta(item.id):
            out[item.path] = (item.id, item.sha256)
    for item, _ in view.delta():
        out[item.path] = (item.id, item.sha256)
    return {p: v for p, v in out.items() if not is_media_path(p)}


class FolderWatcher:
    """Syncs `folder` (the index's corpus root) into `live`, one pass at a time."""

    def __init__(self, live: LiveIndex, folder: Path, encoder: Encoder) -> None:
        root = Path(folder).resolve()
        if root != live.base.root.resolve():
            raise ValueError(f"{folder} is not this index's corpus root ({live.base.root})")
        self.live, self.root, self.encoder = live, root, encoder
        self._known: dict[str, tuple[int, int, str]] = {}  # path → size, mtime_ns, sha256
        self._stop = threading.Event()  # run()'s: a pass stops between two files once it is set

    def sync(self) -> SyncReport:
        scan = scan_folder(self.root, exclude=[self.live.index_dir])
        entries, _ = hash_entries(scan.entries, self._known)
        self._known = {e.rel: (e.size, e.mtime_ns, e.sha256) for e in entries}
        indexed = _indexed_paths(self.live)
        present = {e.rel for e in entries}
        gone = {sha: (p, i) for p, (i, sha) in indexed.items() if p not in present}
        rep = SyncReport()
        for e in entries:
            if self._stop.is_set():  # each write is durable; the next pass does the rest
                return rep
            have = indexed.get(e.rel)
            if have is not None and have[1] == e.sha256:
                continue
            moved = gone.pop(e.sha256, None) if have is None else None
            item_id = have[0] if have is not None else moved[1] if moved else None
            if self._put(e, item_id):
                rep.changed += have is not None
                rep.moved += moved is not None
                rep.added += have is None and moved is None
            else:
                rep.failed += 1
        for path, item_id in gone.values():
            self.live.delete(item_id)
            rep.deleted += 1
            log.info("deleted %s (id %d)", path, item_id)
        return rep

    def _put(self, e: Entry, item_id: int | None) -> bool:
        try:
            img = self.encoder.load_image(e.abs)
            w, h = _stored_size(e.abs)
        except (ImageLoadError, OSError) as err:
            log.warning("%s: skipped (%s)", e.rel, err)
            return False
        vec = self.encoder.encode_images([img])[0]
        new = NewImage(e.rel, e.sha256, e.size, w, h, vec, mtime_ns=e.mtime_ns)
        item = self.live.put(new, item_id)
        log.info("%s %s (id %d)", "re-encoded" if item_id is not None else "added", e.rel, item.id)
        return True

    def run(
        self,
        stop: threading.Event,
        on_pass: Callable[[SyncReport], None] | None = None,
        *,
        debounce_s: float = 1.0,
        force_polling: bool = False,
    ) -> None:
        """A pass once the watcher is up, then one per burst of changes, until `stop` is set.

        `debounce_s`: the longest a burst is gathered before its pass (and, polling, the delay
        between two looks at the folder)."""
        from watchfiles import DefaultFilter, watch

        if debounce_s <= 0:
            raise ValueError("debounce_s must be more than 0")
        self._stop = stop
        ms = max(1, int(debounce_s * 1000))
        changes = watch(
            self.root,
            watch_filter=DefaultFilter(ignore_paths=[str(Path(self.live.index_dir).resolve())]),
            debounce=ms,
            step=min(50, ms),
            stop_event=stop,
            rust_timeout=500,  # how often `stop` is looked at
            yield_on_timeout=True,  # an empty batch: the watcher is up
            force_polling=force_polling,
            poll_delay_ms=ms,
        )
        first = True  # the first pass runs once the watcher is up: no change slips in between
        for batch in changes:
            if batch or first:
                log.debug("%d file-system events", len(batch))
                self._pass(on_pass)
            first = False

    def _pass(self, on_pass: Callable[[SyncReport], None] | None) -> None:
        rep = self.sync()
        if on_pass is not None:
            on_pass(rep)
