"""Prometheus metrics in the text exposition format, written by hand (no client library):
request counts by route and status, latency histograms per request stage, and the state of a
living index (delta, tombstones, log size, last compaction, write latency)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

# Seconds; covers a cache hit (sub-ms) up to a slow image upload.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
                break
        self.total += 1
        self.sum += value

    def lines(self, name: str, labels: str) -> list[str]:
        out, cum = [], 0
        sep = "," if labels else ""
        for b, c in zip(self.buckets, self.counts, strict=True):
            cum += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {cum}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        out.append(f"{name}_sum{{{labels}}} {self.sum:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.total}")
        return out


class Metrics:
    """Thread-safe: stages are observed from worker threads as well as the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.request_seconds: dict[str, Histogram] = {}
        self.stage_seconds: dict[str, Histogram] = {}
        self.batch_size: dict[str, Histogram] = {}
        self.cache: dict[tuple[str, str], int] = defaultdict(int)
        self.gauges: dict[str, float] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, method, status)] += 1
            self.request_seconds.setdefault(route, Histogram(BUCKETS)).observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_seconds.setdefault(stage, Histogram(BUCKETS)).observe(seconds)

    def observe_batch(self, kind: str, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.setdefault(kind, Histogram(BATCH_BUCKETS)).observe(size)
            self.stage_seconds.setdefault(f"{kind}_batch", Histogram(BUCKETS)).observe(seconds)

    def cache_event(self, cache: str, result: str) -> None:
        with self._lock:
            self.cache[(cache, result)] += 1

    def set_gauge(self, name: str, value: float) -> None:
        with self._lock:
            self.gauges[name] = value

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP clipsearch_requests_total HTTP requests by route, method and status.",
                "# TYPE clipsearch_requests_total counter",
            ]
            for (route, method, status), n in sorted(self.requests.items()):
                lines.append(
                    f'clipsearch_requests_total{{route="{route}",method="{method}",'
                    f'status="{status}"}} {n}'
                )
            lines += [
                "# HELP clipsearch_request_seconds Request latency by route.",
                "# TYPE clipsearch_request_seconds histogram",
            ]
            for route, h in sorted(self.request_seconds.items()):
                lines += h.lines("clipsearch_request_seconds", f'route="{route}"')
            lines += [
                "# HELP clipsearch_stage_seconds Time spent per stage (decode, encode, search…).",
                "# TYPE clipsearch_stage_seconds histogram",
            ]
            for stage, h in sorted(self.stage_seconds.items()):
                lines += h.lines("clipsearch_stage_seconds", f'stage="{stage}"')
            lines += [
                "# HELP clipsearch_batch_size Items per encoder batch.",
                "# TYPE clipsearch_batch_size histogram",
            ]
            for kind, h in sorted(self.batch_size.items()):
                lines += h.lines("clipsearch_batch_size", f'kind="{kind}"')
            lines += [
                "# HELP clipsearch_cache_total Cache lookups by cache and result.",
                "# TYPE clipsearch_cache_total counter",
            ]
            for (cache, result), n in sorted(self.cache.items()):
                lines.append(f'clipsearch_cache_total{{cache="{cache}",result="{result}"}} {n}')
            for name, value in sorted(self.gauges.items()):
                lines += [f"# TYPE clipsearch_{name} gauge", f"clipsearch_{name} {value:g}"]
            lines += [
                "# TYPE clipsearch_uptime_seconds gauge",
                f"clipsearch_uptime_seconds {time.time() - self.started:.3f}",
            ]
        return "\n".join(lines) + "\n"


def live_lines(stats: dict[str, Any], now: float) -> list[str]:
    """A living index's state, from its `stats()` (GET /stats `live`), as Prometheus lines.

    Write latency is a summary over the recent writes (log append + fsync: what a client waits
    for); the end-to-end latency of a write request is in `clipsearch_request_seconds`."""
    last = stats.get("last_compaction")
    gauges = [
        ("live_delta_items", "Items added or re-encoded since the published version.", "delta"),
        ("live_tombstones", "Published items hidden by a delete or an edit.", "tombstones"),
        ("live_pending_changes", "Log records not yet folded into a version.", "pending"),
        ("live_log_bytes", "Size of the write-ahead log on disk.", "log_bytes"),
    ]
    lines = []
    for name, help_, key in gauges:
        lines += [f"# HELP clipsearch_{name} {help_}", f"# TYPE clipsearch_{name} gauge",
                  f"clipsearch_{name} {stats.get(key) or 0:g}"]  # fmt: skip
    lines += [
        "# HELP clipsearch_live_last_compaction_timestamp_seconds Unix time of the last compaction"
        " by this process (0: none yet).",
        "# TYPE clipsearch_live_last_compaction_timestamp_seconds gauge",
        f"clipsearch_live_last_compaction_timestamp_seconds {last or 0:.3f}",
    ]
    if last is not None:
        lines += [
            "# HELP clipsearch_live_seconds_since_compaction Seconds since the last compaction.",
            "# TYPE clipsearch_live_seconds_since_compaction gauge",
            f"clipsearch_live_seconds_since_compaction {max(0.0, now - last):.3f}",
        ]
    lines += [
        "# HELP clipsearch_live_write_seconds Write latency (log append + fsync), recent writes.",
        "# TYPE clipsearch_live_write_seconds summary",
    ]
    for q, key in (("0.5", "write_ms_p50"), ("0.99", "write_ms_p99")):
        if stats.get(key) is not None:
            lines.append(f'clipsearch_live_write_seconds{{quantile="{q}"}} {stats[key] / 1000:.6f}')
    return lines
