"""Training metrics: a CSV file (always) and TensorBoard events (when tensorboard is installed)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
COLUMNS = [
    "step", "epoch", "samples", "loss", "lr", "lr_image", "lr_text", "logit_scale",
    "samples_per_s", "train_s", "train_cpu_s", "skipped_rows",
    "val_t2i_R@1", "val_t2i_R@5", "val_t2i_R@10", "val_i2t_R@1", "val_i2t_R@5", "val_i2t_R@10",
    "val_zeroshot_top1",
]  # fmt: skip


class MetricsLog:
    def __init__(self, out: Path, start_step: int, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = out / METRICS_FILE
        self.tb = None
        self.resumed_clock = (0.0, 0.0)  # (train_s, train_cpu_s) of the last kept row
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        rows = self._kept_rows(start_step)
        if rows and rows[-1].get("train_s") and rows[-1].get("train_cpu_s"):
            self.resumed_clock = (float(rows[-1]["train_s"]), float(rows[-1]["train_cpu_s"]))
        with open(self.path, "w", newline="") as fh:  # rewrite: drop rows past a resume point
            w = csv.DictWriter(fh, COLUMNS)
            w.writeheader()
            w.writerows(rows)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=start_step or None)
            except ImportError:
                log.info("tensorboard is not installed; metrics go to %s only", self.path)

    def _kept_rows(self, start_step: int) -> list[dict]:
        if not start_step or not self.path.is_file():
            return []
        with open(self.path, newline="") as fh:
            return [r for r in csv.DictReader(fh) if int(r["step"]) <= start_step]

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, COLUMNS).writerow({k: row.get(k, "") for k in COLUMNS})
        if self.tb is not None:
            for k in ("loss", "lr", "logit_scale", "samples_per_s"):
                self.tb.add_scalar(f"train/{k}", float(row[k]), row["step"])

    def write_eval(
        self, step: int, res: dict[str, Any], at: dict[str, float] | None = None
    ) -> None:
        """One evaluation row; `at`: the training clock then (train_s, train_cpu_s)."""
        if not self.enabled:
            return
        row: dict[str, Any] = {"step": step, **(at or {})}
        for direction in ("t2i", "i2t"):
            for k, v in res[direction].items():
                row[f"val_{direction}_{k}"] = v
        if "zeroshot" in res:
            row["val_zeroshot_top1"] = res["zeroshot"]["top1"]
        self.write_partial(row)

    def write_partial(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, COLUMNS).writerow({k: row.get(k, "") for k in COLUMNS})
        if self.tb is not None:
            for k, v in row.items():
                if k.startswith("val_"):
                    self.tb.add_scalar(k.replace("val_", "val/", 1), float(v), row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
