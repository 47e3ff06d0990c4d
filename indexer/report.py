"""The build report: what was encoded, reused, skipped (with reasons) and how fast."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Skip:
    """A file that is not in the index, and why (`code` is machine-readable)."""

    path: str
    code: str
    message: str


@dataclass
class BuildReport:
    """Counts of one build or update. `encoded` counts distinct contents run through the model."""

    version: str | None = None
    source: str = ""
    mode: str = "build"  # build | update
    scanned: int = 0  # candidate image files found (by extension or manifest row)
    items: int = 0  # items in the published version
    encoded: int = 0  # distinct contents encoded by the model in this run
    resumed: int = 0  # distinct contents taken from an interrupted run's shards
    reused: int = 0  # distinct contents whose vectors came from the previous version
    duplicates: int = 0  # files whose content equals another file's (encoded once)
    added: int = 0
    removed: int = 0
    renamed: int = 0
    changed: int = 0
    ignored_files: int = 0  # files without an image extension (not counted as skipped)
    skipped: list[Skip] = field(default_factory=list)
    seconds: float = 0.0
    encode_seconds: float = 0.0
    images_per_s: float = 0.0  # encoded / time spent in the decode+encode stage
    factory: str = ""
    recall_at_10: float | None = None  # None: not measured (an empty index)
    warnings: list[str] = field(default_factory=list)  # e.g. an empty index

    @property
    def skipped_by_code(self) -> dict[str, int]:
        return dict(Counter(s.code for s in self.skipped))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped_by_code"] = self.skipped_by_code
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildReport:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["skipped"] = [Skip(**s) for s in d.get("skipped", [])]
        return cls(**d)

    def summary_lines(self, max_skipped: int = 20) -> list[str]:
        """Human-readable lines for the CLI."""
        lines = [f"warning: {w}" for w in self.warnings]
        lines += [
            f"version     {self.version}",
            f"items       {self.items}  (scanned {self.scanned}, duplicates {self.duplicates})",
            f"encoded     {self.encoded}  (resumed {self.resumed}, reused {self.reused})",
        ]
        if self.mode == "update":
            lines.append(
                f"changes     +{self.added} -{self.removed} renamed {self.renamed} "
                f"changed {self.changed}"
            )
        lines.append(
            f"time        {self.seconds:.1f} s  ({self.images_per_s:.1f} images/s while encoding)"
        )
        recall = "n/a" if self.recall_at_10 is None else f"{self.recall_at_10:.3f}"
        lines.append(f"index       {self.factory}  recall@10 {recall}")
        if self.ignored_files:
            lines.append(f"ignored     {self.ignored_files} non-image files")
        lines.append(f"skipped     {len(self.skipped)}  {self.skipped_by_code or ''}".rstrip())
        for s in self.skipped[:max_skipped]:
            lines.append(f"  {s.path}: {s.code}: {s.message}")
        if len(self.skipped) > max_skipped:
            lines.append(f"  … and {len(self.skipped) - max_skipped} more (see the manifest)")
        return lines
