"""The manifest is one typed record: validated on read, unknown keys kept through a derived
version, versions listed for `index info`; one model check with a fix for a backend mismatch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks._synthetic import GapSpace, publish_vectors
from indexer import (
    BuildOptions,
    IndexOpenError,
    Manifest,
    ModelMismatchError,
    add_texts,
    build_index,
    check_model,
    list_versions,
    live_version,
    open_index,
    read_manifest,
)
from indexer.layout import MANIFEST, VERSIONS

DIM = 16


@pytest.fixture
def index(tmp_path):
    space = GapSpace(dim=DIM, concepts=5, seed=1)
    publish_vectors(tmp_path / "idx", space.images(20), 20, DIM, model="m", fingerprint="a" * 64)
    return tmp_path / "idx"


class _TextsOnly:
    """Just enough of an Encoder for add_texts."""

    spec, fingerprint, dim, backend = "m", "a" * 64, DIM, "torch"

    def encode_texts(self, texts):
        v = np.random.default_rng(0).standard_normal((len(texts), DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_round_trip_keeps_unknown_keys_through_a_derived_version(index):
    path = index / VERSIONS / live_version(index) / MANIFEST
    data = json.loads(path.read_text())
    data["future_field"] = {"x": 1}
    path.write_text(json.dumps(data))
    m = read_manifest(index)
    assert m.extra == {"future_field": {"x": 1}} and m.to_dict()["future_field"] == {"x": 1}
    assert Manifest.from_dict(m.to_dict()) == m
    open_index(index).close()  # an unknown key does not stop a version from opening
    old = live_version(index)
    add_texts(index, ["a", "b"], _TextsOnly())
    new = read_manifest(index)
    assert new.parent == old and new.version == live_version(index) != old
    assert new.texts_count == 2 and new.texts_source == "file"
    assert new.extra == {"future_field": {"x": 1}} and new.count == 20


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dim": "16"}, "invalid 'dim'"),
        ({"count": -1}, "count -1"),
        ({"files": {"images.faiss": 3}}, "bad entry"),
        ({"model": None}, "invalid 'model'"),
    ],
)
def test_invalid_manifests_are_index_open_errors(index, change, message):
    path = index / VERSIONS / live_version(index) / MANIFEST
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(IndexOpenError, match=message):
        open_index(index)
    path.write_text("[1, 2]")
    with pytest.raises(IndexOpenError, match="not a JSON object"):
        read_manifest(index)


def test_list_versions(index, tmp_path):
    add_texts(index, ["a"], _TextsOnly())
    (index / VERSIONS / "broken").mkdir()
    versions = list_versions(index)
    assert [v.live for v in versions] == [False, True, False]  # "broken" sorts last
    assert versions[0].count == versions[1].count == 20 and versions[2].manifest is None
    assert versions[1].size_bytes > 0 and versions[1].created_at
    assert list_versions(tmp_path / "nothing") == []


def test_check_model_explains_a_backend_mismatch(index):
    m = read_manifest(index)
    check_model(m, m.fingerprint)  # same model: fine
    with pytest.raises(ModelMismatchError, match="build the index with --backend onnx-int8"):
        check_model(m, "b" * 64, "m", backend="onnx-int8")
    with pytest.raises(ModelMismatchError, match="built with model 'm'.*rebuild the index"):
        check_model(m, "b" * 64, "other", backend="onnx")  # fp32 ONNX: another model
    v = open_index(index)
    try:
        with pytest.raises(ModelMismatchError, match="--backend onnx-int8"):
            check_model(v, "b" * 64, "m", backend="onnx-int8")
    finally:
        v.close()


def test_build_options_are_checked_and_specs_are_refused(tmp_path):
    assert BuildOptions.of(None, workers=0).workers == 0
    for bad in ({"batch_size": 0}, {"shard_size": 0}, {"workers": -1}):
        with pytest.raises(ValueError, match="must be at least"):
            BuildOptions(**bad)
    with pytest.raises(ValueError, match="invalid size"):
        BuildOptions(memory_budget="lots")
    with pytest.raises(TypeError):
        BuildOptions.of(None, batchsize=3)
    with pytest.raises(TypeError, match="load_encoder"):
        build_index(tmp_path, tmp_path / "idx", "starter")
