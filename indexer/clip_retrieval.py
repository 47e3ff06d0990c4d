"""clip-retrieval's embedding folders, in and out: what `clip-retrieval inference` writes becomes
an ordinary published version (no image is re-encoded), and a version can be written back.

The layout (clip_retrieval/clip_inference/writer.py), part N zero-padded to the same width:

    img_emb/img_emb_N.npy            float16 (rows, dim), L2-normalised image embeddings
    text_emb/text_emb_N.npy          optional: float16 (rows, dim), one caption embedding per row
    metadata/metadata_N.parquet      row i ↔ row i of the .npy files: `image_path` (the image
                                     file as given to clip-retrieval, or a webdataset key),
                                     `caption`, and any other columns (e.g. `url`)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from ._fsutil import exclusive_lock
from .assemble import Plan, assign_ids, write_version_files
from .layout import WORK
from .live.guard import check_no_live_writes
from .manifest import Manifest
from .media import is_media_path, media_file
from .publish import clean_staging, new_version_id, publish, sha256_file, staging_dir
from .reader import open_index
from .recall import recall_queries
from .report import BuildReport, Skip
from .resolve import backend_of
from .scan import Entry
from .store import write_texts
from .texts import MAX_TEXT_CHARS

if TYPE_CHECKING:
    from model import Encoder

log = logging.getLogger(__name__)

FORMAT = "clip-retrieval"
KNOWN_COLUMNS = ("image_path", "caption")  # every other metadata column is the item's `extra`
_PART = re.compile(r"_(\d+)\.(npy|parquet)$")


@dataclass(frozen=True)
class ImportOptions:
    """How `clipsearch index import` turns an embedding folder into a version."""

    root: str | Path | None = None  # corpus root for item paths (None: the images' common folder)
    factory: str | None = None  # FAISS factory (None: chosen by size and memory budget)
    memory_budget: int | str | None = None


@dataclass
class Embeddings:
    """One clip-retrieval output folder, read: rows aligned across the three fields."""

    images: np.ndarray  # (n, dim) float16
    texts: np.ndarray | None  # (n, dim) float16 caption embeddings, or None
    rows: list[dict[str, Any]] = field(default_factory=list)  # metadata, one dict per row


def _parts(folder: Path, sub: str, stem: str, ext: str) -> list[Path]:
    files = [p for p in (folder / sub).glob(f"{stem}_*.{ext}") if _PART.search(p.name)]
    return sorted(files, key=lambda p: int(_PART.search(p.name).group(1)))


def read_embeddings(folder: str | Path) -> Embeddings:
    """Read a `clip-retrieval inference` output folder; ValueError names the first problem."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    img_parts = _parts(folder, "img_emb", "img_emb", "npy")
    meta_parts = _parts(folder, "metadata", "metadata", "parquet")
    if not img_parts:
        raise ValueError(f"{folder}: no img_emb/img_emb_*.npy (not a clip-retrieval output folder)")
    if len(meta_parts) != len(img_parts):
        raise ValueError(
            f"{folder}: {len(img_parts)} img_emb parts but {len(meta_parts)} metadata parts"
        )
    text_parts = _parts(folder, "text_emb", "text_emb", "npy")
    images = np.concatenate([_load_matrix(p) for p in img_parts])
    texts = np.concatenate([_load_matrix(p) for p in text_parts]) if text_parts else None
    rows: list[dict[str, Any]] = []
    for p in meta_parts:
        table = pq.read_table(p)
        keep = [c for c in table.column_names if not c.startswith("__index_level_")]
        rows.extend(table.select(keep).to_pylist())
    if len(rows) != len(images) or (texts is not None and texts.shape != images.shape):
        shapes = f"img_emb {images.shape}, text_emb {None if texts is None else texts.shape}"
        raise ValueError(f"{folder}: {len(rows)} metadata rows do not match {shapes}")
    if rows and "image_path" not in rows[0]:
        raise ValueError(f"{folder}: the metadata has no image_path column")
    return Embeddings(images, texts, rows)


def _load_matrix(path: Path) -> np.ndarray:
    try:
        m = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy file ({e})") from None
    if m.ndim != 2 or m.dtype.kind != "f":
        raise ValueError(f"{path}: expected a 2-D float matrix, got {m.dtype} {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{path}: holds NaN or Inf values")
    return m.astype(np.float16, copy=False)


def _unit(m: np.ndarray) -> np.ndarray:
    """Rows L2-normalised (float32 math), stored as float16 like every clipsearch version."""
    v = m.astype(np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms == 0, 1, norms)).astype(np.float16)


def check_width(emb: Embeddings, enc: Encoder) -> None:
    dim = emb.images.shape[1]
    if dim != enc.dim:
        raise ValueError(
            f"the embeddings are {dim} wide but model {enc.spec!r} gives {enc.dim}: import them "
            "with the model clip-retrieval computed them with (--model)"
        )


def _corpus_root(paths: list[str], root: str | Path | None, folder: Path) -> Path:
    """Where item paths are relative to: `root`, else the common folder of absolute image
    paths, else (webdataset keys, relative paths) the embedding folder."""
    if root is not None:
        return Path(root).resolve()
    if paths and all(os.path.isabs(p) for p in paths):
        return Path(os.path.commonpath([os.path.dirname(p) for p in paths]))
    return folder.resolve()


def _relative(path: str, root: Path) -> str | None:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            return None
    rel = Path(os.path.normpath(p)).as_posix()
    return None if rel.startswith("../") or rel == ".." else rel


def _entry(rel: str, root: Path, row: dict[str, Any], vector: np.ndarray) -> tuple[Entry, int, int]:
    """The item of one metadata row; the file's hash and size when it is here (a later `index
    update` of the folder then reuses the vector), else a hash of the vector."""
    extra = {k: _json_safe(v) for k, v in row.items() if k not in KNOWN_COLUMNS}
    caption = row.get("caption")
    caption = caption if isinstance(caption, str) and caption.strip() else None
    f = root / rel
    size = w = h = 0
    sha = hashlib.sha256(vector.tobytes()).hexdigest()
    if f.is_file():
        from PIL import Image

        size, sha = f.stat().st_size, sha256_file(f)
        try:
            with Image.open(f) as im:  # reads the header only
                w, h = im.size
        except (OSError, ValueError) as e:
            log.info("%s: size unknown (%s)", f, e)
    return Entry(rel, f, caption, extra, size, 0, sha), w, h


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return str(v)
    return v


def plan_embeddings(emb: Embeddings, root: Path, report: BuildReport) -> tuple[Plan, list[int]]:
    """Every row with a usable, unique path becomes an item (ids 0… in row order).
    → the plan and, for each planned item, its row in `emb`."""
    images = _unit(emb.images)
    plan, seen, rows = Plan(), set(), []
    for i, row in enumerate(emb.rows):
        raw = str(row.get("image_path") or "")
        rel = _relative(raw, root) if raw else None
        if rel is None:
            report.skipped.append(Skip(raw, "outside_corpus", f"not under the root {root}"))
        elif rel in seen:
            report.skipped.append(Skip(raw, "duplicate_path", "the same image_path twice"))
        else:
            seen.add(rel)
            entry, w, h = _entry(rel, root, row, images[i])
            plan.add(entry, images[i], w, h)
            rows.append(i)
    assign_ids(plan, None, report)
    return plan, rows


def _write_texts(
    staging: Path, emb: Embeddings, plan: Plan, rows: list[int], enc: Encoder
) -> dict[str, Any]:
    """The distinct captions as the image→text corpus: clip-retrieval's own caption embeddings
    when it wrote them, else encoded with the model (texts only, never images)."""
    first: dict[str, int] = {}  # caption → the first row holding it
    for it, row in zip(plan.items, rows, strict=True):
        if it.entry.caption is not None:
            first.setdefault(" ".join(it.entry.caption.split())[:MAX_TEXT_CHARS], row)
    if not first:
        return {}
    corpus = sorted(first)
    if emb.texts is not None:
        vecs = _unit(emb.texts[[first[t] for t in corpus]])
    else:
        vecs = enc.encode_texts(corpus).astype(np.float16)
    index = faiss.IndexFlatIP(enc.dim)  # text ids are row numbers
    index.add(vecs.astype(np.float32))
    faiss.write_index(index, str(staging / "texts.faiss"))
    write_texts(staging / "texts.sqlite", corpus)
    return {"texts_count": len(corpus), "texts_source": "captions"}


def import_embeddings(
    folder: str | Path,
    index_dir: str | Path,
    encoder: Encoder,
    options: ImportOptions | None = None,
) -> BuildReport:
    """Publish the embeddings of a `clip-retrieval inference` output folder as a new version of
    `index_dir` (index type by size, recall self-check, captions as the texts corpus). `encoder`
    is the model the embeddings came from: its width is checked, its text tower measures the
    recall; no image is encoded."""
    opts = options or ImportOptions()
    folder, index_dir = Path(folder), Path(index_dir)
    emb = read_embeddings(folder)
    check_width(emb, encoder)
    t0 = time.perf_counter()
    report = BuildReport(source=str(folder.resolve()), mode="import", scanned=len(emb.rows))
    root = _corpus_root([str(r.get("image_path") or "") for r in emb.rows], opts.root, folder)
    plan, rows = plan_embeddings(emb, root, report)
    if not plan.items:
        report.warnings.append(f"no usable rows in {folder}: the index is empty")
    job = _Import(emb, plan, rows, encoder, opts, report, root)
    index_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(index_dir / WORK / "lock"):
        clean_staging(index_dir)
        check_no_live_writes(index_dir)
        version = new_version_id()
        staging = staging_dir(index_dir, version)
        try:
            manifest = _write_version(staging, job)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        report.version = version
        publish(index_dir, staging, version, manifest)
    report.seconds = time.perf_counter() - t0
    log.info("imported %d items from %s as version %s", report.items, folder, version)
    return report


@dataclass
class _Import:
    """One import in progress: what the version's files are written from."""

    emb: Embeddings
    plan: Plan
    rows: list[int]  # the row of `emb` behind each planned item
    enc: Encoder
    opts: ImportOptions
    report: BuildReport
    root: Path


def _write_version(staging: Path, job: _Import) -> Manifest:
    enc, plan, report = job.enc, job.plan, job.report
    built = write_version_files(
        staging,
        plan,
        enc.dim,
        factory=job.opts.factory,
        memory_budget=job.opts.memory_budget,
        queries=lambda: recall_queries(enc),
    )
    texts = _write_texts(staging, job.emb, plan, job.rows, enc)
    report.items = len(plan.items)
    report.reused = len(plan.items)  # every vector came from clip-retrieval
    report.factory = built.factory
    report.recall_at_10 = None if built.recall_at_10 is None else round(built.recall_at_10, 4)
    return Manifest(
        model=enc.spec,
        fingerprint=enc.fingerprint,
        dim=enc.dim,
        count=len(plan.items),
        backend=backend_of(enc),
        root=str(job.root),
        source=report.source,
        **built.manifest_fields(),
        **texts,
        build_report=report.to_dict(),
    )


# -- export ---------------------------------------------------------------------------------------


def export_embeddings(index_dir: str | Path, out: str | Path, rows_per_part: int = 10**6) -> int:
    """Write the live version of `index_dir` in clip-retrieval's layout into `out` (image
    paths absolute, captions, metadata columns; text_emb when every item's caption is in the
    texts corpus). → the number of rows written."""
    import pyarrow.parquet as pq

    if rows_per_part < 1:
        raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: not empty (export writes into a new or empty folder)")
    v = open_index(index_dir)
    try:
        vectors = np.load(v.path / "vectors.npy", mmap_mode="r")
        items = list(v.rows())
        text_vecs = _caption_vectors(v, [r["caption"] for r in items])
        parts = max(1, math.ceil(len(items) / rows_per_part))
        width = int(math.log10(parts)) + 1  # clip-retrieval's zero padding
        for d in ("img_emb", "metadata") + (("text_emb",) if text_vecs is not None else ()):
            (out / d).mkdir(parents=True, exist_ok=True)
        for n in range(parts):
            lo, hi = n * rows_per_part, min(len(items), (n + 1) * rows_per_part)
            tag = str(n).zfill(width)
            chunk = items[lo:hi]
            np.save(out / "img_emb" / f"img_emb_{tag}.npy", _rows(vectors, chunk))
            if text_vecs is not None:
                np.save(out / "text_emb" / f"text_emb_{tag}.npy", text_vecs[lo:hi])
            meta = [_metadata_row(v.root, Path(index_dir), r) for r in chunk]
            pq.write_table(_table(meta), out / "metadata" / f"metadata_{tag}.parquet")
        return len(items)
    finally:
        v.close()


def _table(rows: list[dict[str, Any]]):
    """One column per key any row has (None where a row lacks it); no caption column when no
    item has a caption (clip-retrieval writes one only for captioned inputs)."""
    import pyarrow as pa

    keys = list(dict.fromkeys(k for r in rows for k in r))
    if all(r.get("caption") is None for r in rows):
        keys = [k for k in keys if k != "caption"]
    if not rows:
        return pa.table({"image_path": pa.array([], pa.string())})
    return pa.table({k: _column([r.get(k) for r in rows]) for k in keys})


def _column(values: list[Any]):
    """An Arrow column; values of mixed types (metadata written by hand) as JSON text."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values])


def _rows(vectors: np.ndarray, chunk: list) -> np.ndarray:
    idx = np.array([int(r["row"]) for r in chunk], dtype=np.int64)
    return np.asarray(vectors[idx] if len(idx) else vectors[:0], dtype=np.float16)


def _metadata_row(root: Path, index_dir: Path, r: Any) -> dict[str, Any]:
    extra = json.loads(r["extra"]) if isinstance(r["extra"], str) else (r["extra"] or {})
    media = media_file(index_dir, r["path"]) if is_media_path(r["path"]) else None
    path = media if media is not None else root / r["path"]  # an upload: its stored file
    row = {"image_path": str(path), "caption": r["caption"]}
    row.update({k: v for k, v in extra.items() if k not in KNOWN_COLUMNS})
    return row


def _caption_vectors(v, captions: list[str | None]) -> np.ndarray | None:
    """(n, dim) float16 embedding of each item's caption, from the texts corpus; None unless
    every item has a caption there."""
    if not v.has_texts or not captions or any(c is None for c in captions):
        return None
    rows = v._db("texts.sqlite").execute("SELECT id, text FROM texts")
    by_text = {t: int(i) for i, t in rows}
    keys = [" ".join(c.split())[:MAX_TEXT_CHARS] for c in captions]
    if not all(k in by_text for k in keys):
        return None
    index = faiss.read_index(str(v.path / "texts.faiss"))
    ids = np.array([by_text[k] for k in keys], dtype=np.int64)
    return np.stack([index.reconstruct(int(i)) for i in ids]).astype(np.float16)
