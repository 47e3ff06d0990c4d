"""The living index at the library level: log, exact delta, tombstones, replay, compaction."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import IndexBusyError, IndexOpenError, live_version, open_index
from indexer.live import LiveIndex, compact
from indexer.live.wal import LIVE_DIR, LOG_NAME
from tests.indexer.live_util import make_vector_index, new_image, unit


def _ids(hits) -> list[int]:
    return [h.item.id for h in hits]


@pytest.fixture
def idx(tmp_path):
    base = make_vector_index(tmp_path / "idx", 20)
    return tmp_path / "idx", base


def test_add_is_searchable_at_once_and_exact(idx):
    d, base = idx
    live = LiveIndex.open(d)
    try:
        v = unit(np.random.default_rng(7), 1)[0]
        added = live.add(new_image(v, "new", caption="a new one", extra={"tag": "x"}))
        assert added.duplicate_of is None and added.item.id == 20
        hits = live.view().search(v[None], 3)[0]
        assert hits[0].item.id == 20 and hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert live.view().count == 21
        assert live.view().get_item(20).caption == "a new one"
        assert _ids(live.view().search(v[None], 5, where={"tag": "x"})[0]) == [20]
        assert live.view().image_path(20) is None  # no media file stored in this test
    finally:
        live.close()


def test_duplicate_answers_the_existing_id(idx):
    d, _ = idx
    live = LiveIndex.open(d)
    try:
        v = unit(np.random.default_rng(1), 1)[0]
        first = live.add(new_image(v, "same"))
        again = live.add(new_image(v, "same"))
        assert again.duplicate_of == first.item.id and again.item.id == first.item.id
        assert live.pending() == 1
    finally:
        live.close()


def test_delete_hides_and_still_returns_k(idx):
    d, base = idx
    live = LiveIndex.open(d)
    try:
        q = base[3][None]
        top = _ids(live.view().search(q, 5)[0])
        for i in top[:3]:
            assert live.delete(i)
        assert not live.delete(top[0])  # already gone
        assert not live.delete(999)
        hits = live.view().search(q, 5)[0]
        assert len(hits) == 5 and not set(top[:3]) & set(_ids(hits))
        assert live.view().get_item(top[0]) is None and live.view().count == 17
        assert len(live.view().search(q, 100)[0]) == 17
    finally:
        live.close()


def test_edit_in_place_keeps_the_id(idx):
    d, base = idx
    live = LiveIndex.open(d)
    try:
        v = -base[5]
        item = live.put(new_image(v, "edited"), item_id=5)
        assert item.id == 5
        hits = live.view().search(v[None], 20)[0]
        assert hits[0].item.id == 5 and hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert _ids(hits).count(5) == 1  # the old vector is hidden
    finally:
        live.close()


def test_replay_after_reopen_and_torn_tail(idx):
    d, _ = idx
    live = LiveIndex.open(d)
    v = unit(np.random.default_rng(2), 2)
    a = live.add(new_image(v[0], "a")).item.id
    live.delete(0)
    live.close()
    with (d / LIVE_DIR / LOG_NAME).open("ab") as f:
        f.write(b'0000abcd {"op":"add","se')  # a crash mid-append: never acknowledged
    live = LiveIndex.open(d)
    try:
        view = live.view()
        assert view.get_item(a) is not None and view.get_item(0) is None
        assert view.count == 20
        b = live.add(new_image(v[1], "b")).item.id
        assert b == a + 1
    finally:
        live.close()
    live = LiveIndex.open(d)
    assert live.view().get_item(b) is not None
    live.close()


def test_damaged_record_before_good_ones_is_refused(idx):
    d, _ = idx
    live = LiveIndex.open(d)
    for i, v in enumerate(unit(np.random.default_rng(3), 2)):
        live.add(new_image(v, f"x{i}"))
    live.close()
    log = d / LIVE_DIR / LOG_NAME
    data = bytearray(log.read_bytes())
    data[12] ^= 0xFF
    log.write_bytes(bytes(data))
    with pytest.raises(IndexOpenError, match="damaged"):
        LiveIndex.open(d)


def test_one_writer_at_a_time(idx):
    d, _ = idx
    live = LiveIndex.open(d)
    try:
        with pytest.raises(IndexBusyError):
            LiveIndex.open(d)
    finally:
        live.close()


def test_compaction_publishes_and_keeps_ids(idx):
    d, base = idx
    live = LiveIndex.open(d)
    try:
        before = live_version(d)
        assert compact(live) is None  # nothing pending: nothing published
        vs = unit(np.random.default_rng(4), 3)
        ids = [live.add(new_image(v, f"c{i}")).item.id for i, v in enumerate(vs)]
        live.delete(2)
        live.put(new_image(-base[7], "e7"), item_id=7)
        version = compact(live)
        assert version is not None and live_version(d) == version != before
        assert live.pending() == 0 and live.view().delta_size == 0 and live.wal.size() == 0
        v = open_index(d)
        try:
            assert v.count == 22 and v.get_item(2) is None
            assert [v.search(vs, 1)[j][0].item.id for j in range(3)] == ids
            assert v.search(-base[7][None], 1)[0][0].item.id == 7
        finally:
            v.close()
    finally:
        live.close()


def test_stats_describe_the_delta_and_the_log(idx):
    d, _ = idx
    live = LiveIndex.open(d)
    try:
        assert live.stats()["write_ms_p50"] is None
        live.add(new_image(unit(np.random.default_rng(9), 1)[0], "s"))
        live.delete(0)
        s = live.stats()
        assert (s["delta"], s["tombstones"], s["pending"]) == (1, 1, 2)
        assert s["log_bytes"] > 0 and s["write_ms_p99"] >= s["write_ms_p50"] > 0
    finally:
        live.close()


def test_a_follower_sees_the_writers_changes_and_compactions(idx):
    from indexer.live.follow import LiveFollower

    d, base = idx
    writer = LiveIndex.open(d)
    follower = LiveFollower.open_follower(d)
    try:
        v = unit(np.random.default_rng(11), 2)
        a = writer.add(new_image(v[0], "f0")).item.id
        writer.delete(1)
        assert follower.view().get_item(a) is None and follower.refresh()
        assert follower.view().get_item(a) is not None and follower.view().get_item(1) is None
        assert not follower.refresh()
        compact(writer)
        b = writer.add(new_image(v[1], "f1")).item.id
        assert follower.refresh()
        view = follower.view()
        assert view.base.id == writer.base.id and view.count == writer.view().count == 21
        assert _ids(view.search(v[1][None], 1)[0]) == [b]
        with pytest.raises(RuntimeError):
            follower.delete(a)
    finally:
        follower.close()
        writer.close()


def test_compactor_close_can_leave_a_running_compaction(idx):
    """`index watch` stops on Ctrl-C without waiting for a long compaction: close(timeout)
    answers False while one runs, and the compaction still completes when let go."""
    import threading

    from indexer.live import CompactOptions, Compactor

    d, _ = idx
    started, release = threading.Event(), threading.Event()

    def slow_queries() -> np.ndarray:  # an ANN compaction encodes its tuning queries first
        started.set()
        release.wait(30)
        return unit(np.random.default_rng(3), 16)

    live = LiveIndex.open(d)
    try:
        live.add(new_image(unit(np.random.default_rng(5), 1)[0], "w"))
        before = live_version(d)
        opts = CompactOptions(changes=1, check_s=0.05, factory="IVF2,Flat")
        compactor = Compactor(live, slow_queries, opts).start()
        assert started.wait(30), "no compaction started"
        assert compactor.close(timeout=0.2) is False  # still compacting: not waited for
        release.set()
        assert compactor.close() is True
        assert live_version(d) != before and live.pending() == 0
    finally:
        live.close()
