"""Opening versions: checksums, missing files, wrong model, path safety, concurrent readers."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from indexer import IndexOpenError, ModelMismatchError, build_index, live_version, open_index


@pytest.fixture
def index_copy(built, tmp_path):
    """A private copy of the module's index that a test may damage."""
    corpus, idx, _ = built
    dst = tmp_path / "idx"
    shutil.copytree(idx, dst)
    return corpus, dst


def _version_dir(idx):
    return idx / "versions" / live_version(idx)


def test_missing_index_is_not_found(tmp_path):
    with pytest.raises(IndexOpenError) as e:
        open_index(tmp_path / "none")
    assert e.value.code == "index_not_found"
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexOpenError, match="no published version") as e:
        open_index(tmp_path / "empty")
    assert e.value.code == "index_not_found"
    with pytest.raises(IndexOpenError, match="no version"):
        open_index(tmp_path / "empty", version="../../etc")


@pytest.mark.parametrize("name", ["items.sqlite", "vectors.npy", "images.faiss"])
def test_corrupt_truncated_or_missing_file(index_copy, name):
    _, idx = index_copy
    f = _version_dir(idx) / name
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IndexOpenError, match=f"{name} is corrupt") as e:
        open_index(idx)
    assert e.value.code == "index_corrupt"
    f.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(IndexOpenError, match="corrupt"):
        open_index(idx)
    f.unlink()
    with pytest.raises(IndexOpenError, match=f"{name} is missing"):
        open_index(idx)


def test_unreadable_manifest(index_copy):
    _, idx = index_copy
    (_version_dir(idx) / "manifest.json").write_text("{not json")
    with pytest.raises(IndexOpenError, match="manifest.json is unreadable"):
        open_index(idx)


def test_model_mismatch_has_a_clear_message(built, starter_encoder):
    _, idx, _ = built
    with pytest.raises(ModelMismatchError, match="built with model 'starter'") as e:
        open_index(idx, expected_fingerprint="0" * 64)
    assert e.value.code == "model_mismatch"
    open_index(idx, expected_fingerprint=starter_encoder.fingerprint).close()


def test_bad_queries_are_rejected(built):
    _, idx, _ = built
    v = open_index(idx)
    try:
        with pytest.raises(ValueError, match="shape"):
            v.search(np.zeros((1, v.dim + 1), np.float32), 3)
        with pytest.raises(ValueError, match="NaN"):
            v.search(np.full((1, v.dim), np.nan, np.float32), 3)
        with pytest.raises(ValueError, match="k must"):
            v.search(np.ones((1, v.dim), np.float32), 0)
        with pytest.raises(ValueError, match="metadata key"):
            v.search(np.ones((1, v.dim), np.float32), 3, where={"a') OR 1=1 --": "x"})
        with pytest.raises(IndexOpenError, match="no texts"):
            v.search_texts(np.ones((1, v.dim), np.float32), 3)
    finally:
        v.close()


def test_image_path_never_leaves_the_corpus(index_copy, tmp_path, starter_encoder):
    corpus, idx = index_copy
    v = open_index(idx)
    try:
        by_path = {v.get_item(i).path: i for i in range(v.count)}
        assert v.image_path(by_path["cat.jpg"]) == (corpus / "cat.jpg").resolve()
        secret = tmp_path / "secret.jpg"
        secret.write_bytes(b"outside the corpus")
        (corpus / "rocket.jpg").unlink()
        (corpus / "rocket.jpg").symlink_to(secret)  # swapped for an escaping symlink later
        assert v.image_path(by_path["rocket.jpg"]) is None
        (corpus / "coffee.jpg").unlink()
        assert v.image_path(by_path["coffee.jpg"]) is None  # gone
        assert v.image_path(123456) is None
    finally:
        v.close()


def test_filters_return_min_k_matches(built, starter_encoder):
    _, idx, _ = built
    v = open_index(idx)
    try:
        q = starter_encoder.encode_texts(["a cat", "a rocket"])
        full = v.search(q, 100)
        assert [len(h) for h in full] == [v.count, v.count]
        sub = v.search(q, 5, path_prefix="sub/")
        assert [[h.item.path for h in hits] for hits in sub] == [["sub/cat_copy.jpg"]] * 2
        some = v.search(q, 3, path_prefix="c")  # cat, camera, cmyk, coffee
        assert all(len(h) == 3 and all(x.item.path.startswith("c") for x in h) for h in some)
        assert v.search(q, 3, path_prefix="zzz") == [[], []]
        threshold = (full[0][2].score + full[0][3].score) / 2
        cut = v.search(q[:1], 10, min_score=threshold)[0]
        assert {h.item.id for h in cut} == {h.item.id for h in full[0][:3]}
        # exact search: scores match the stored vectors
        vec = v.get_vector(full[1][0].item.id)
        assert abs(float(vec @ q[1]) - full[1][0].score) < 1e-4
    finally:
        v.close()


def test_concurrent_readers_get_the_same_answers(built, starter_encoder):
    _, idx, _ = built
    v = open_index(idx)
    q = starter_encoder.encode_texts(["a cat", "a cup of coffee", "a rocket", "a man"])
    expected = [[(h.item.id, round(h.score, 5)) for h in hits] for hits in v.search(q, 5)]
    errors: list[BaseException] = []

    def reader(seed: int) -> None:
        try:
            for i in range(30):
                j = (seed + i) % len(q)
                got = v.search(q[j : j + 1], 5, path_prefix="" if i % 2 else None)[0]
                assert [(h.item.id, round(h.score, 5)) for h in got] == expected[j]
                assert v.get_item(got[0].item.id).path == got[0].item.path
                assert v.get_vector(got[0].item.id) is not None
        except BaseException as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    v.close()
    assert not errors, errors[0]


def test_previous_version_stays_readable_after_rebuild(index_copy, starter_encoder):
    corpus, idx = index_copy
    old = live_version(idx)
    v_old = open_index(idx)
    report = build_index(corpus, idx, starter_encoder, workers=0, progress=False)
    assert live_version(idx) == report.version != old
    assert v_old.search(starter_encoder.encode_texts(["a cat"]), 1)[0][0].item.path in (
        "cat.jpg",
        "sub/cat_copy.jpg",
    )
    v_old.close()
    open_index(idx, version=old).close()
