"""The compiled-model cache: what names an entry, what makes one unusable, and a run that never imports TensorFlow.

These tests use their own, empty cache folders, never the session's shared one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fruits_contract import RANDOM_WEIGHTS_SEED
from fruits_spark import model_cache
from fruits_spark.errors import JobInputError
from fruits_spark.images import decode_image
from fruits_spark.inference import Featurizer
from fruits_spark.model import CompiledModel, build_keras_model
from fruits_spark.model_cache import (
    SOURCE_CACHE,
    SOURCE_COMPILED,
    CacheKey,
    LocalStore,
    UnusableEntryError,
    load_or_compile,
    read_entry,
    weights_identity,
    write_entry,
)
from tests.suite import SPARK_JOBS_DIR

Filled = tuple[Path, CompiledModel, str]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _key(image_size: int) -> CacheKey:
    converter = model_cache.installed_version("tensorflow", "tensorflow-cpu")
    assert converter is not None, "the tests compile, so TensorFlow is installed"
    return CacheKey(f"none-seed{RANDOM_WEIGHTS_SEED}", image_size, converter)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, image_size: int) -> Filled:
    """A cache that one run (this module's only compile but one) has filled."""
    folder = tmp_path_factory.mktemp("model-cache")
    model, source = load_or_compile("none", image_size, str(folder))
    return folder, model, source


@pytest.fixture
def cache_copy(filled: Filled, tmp_path: Path) -> Path:
    return Path(shutil.copytree(filled[0], tmp_path / "cache"))


def test_a_first_run_compiles_and_stores_one_whole_entry(filled: Filled, image_size: int) -> None:
    folder, _, source = filled
    key = _key(image_size)

    assert source == SOURCE_COMPILED
    assert sorted(path.name for path in folder.iterdir()) == [f"{key.name}.json", f"{key.name}.tflite"]


def test_the_next_run_loads_the_same_model_from_the_cache(filled: Filled, image_size: int, caplog) -> None:
    folder, compiled, _ = filled

    with caplog.at_level(logging.INFO, logger=model_cache.__name__):
        cached, source = load_or_compile("none", image_size, str(folder))

    assert source == SOURCE_CACHE
    assert (cached.tflite, cached.fingerprint) == (compiled.tflite, compiled.fingerprint)
    assert "model from cache" in caplog.text


def test_the_cached_model_gives_the_features_of_keras_on_the_same_weights(
    filled: Filled, image_tree: dict, image_size: int
) -> None:
    cached, _ = load_or_compile("none", image_size, str(filled[0]))
    images = np.stack([decode_image(path.read_bytes(), image_size) for path in image_tree["good"][:8]])

    expected = build_keras_model("none", image_size).predict(images, verbose=0)

    assert _cosine(Featurizer(cached.tflite, num_threads=2)(images), expected).min() >= 0.9999


def test_the_key_names_the_weights_the_size_and_the_converter(image_size: int) -> None:
    name = _key(image_size).name

    assert name.startswith(f"mobilenet_v2-{image_size}px-none-seed42-tf")
    assert model_cache.installed_version("tensorflow", "tensorflow-cpu") in name


def test_imagenet_weights_are_named_by_the_keras_version() -> None:
    import keras

    assert weights_identity("imagenet", None) == f"imagenet-keras{keras.__version__}"


def test_a_weights_file_is_named_by_its_content_not_its_path(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("a.weights.h5", "b.weights.h5", "c.weights.h5")}
    files["a.weights.h5"].write_bytes(b"weights one")
    files["b.weights.h5"].write_bytes(b"weights one")
    files["c.weights.h5"].write_bytes(b"weights two")
    identity = {name: weights_identity(str(path), lambda uri: Path(uri).read_bytes()) for name, path in files.items()}

    assert identity["a.weights.h5"] == identity["b.weights.h5"] != identity["c.weights.h5"]
    assert identity["a.weights.h5"].startswith("file-sha256-")


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda tflite, manifest: _flip_a_byte(tflite), "sha256 differs"),
        (lambda tflite, manifest: tflite.unlink(), "flatbuffer is missing"),
        (lambda tflite, manifest: manifest.write_text('{"format": 1, "weights_ident'), "manifest is not readable"),
        (lambda tflite, manifest: _edit_manifest(manifest, converter="0.0.1"), "names another model"),
    ],
    ids=["flipped byte", "no flatbuffer", "truncated manifest", "another converter"],
)
def test_a_damaged_entry_is_refused_with_its_reason(cache_copy: Path, image_size: int, damage, reason: str) -> None:
    key = _key(image_size)
    damage(cache_copy / f"{key.name}.tflite", cache_copy / f"{key.name}.json")

    with pytest.raises(UnusableEntryError, match=reason):
        read_entry(LocalStore(str(cache_copy)), key, "none")


def test_a_flatbuffer_of_another_size_is_refused_even_with_a_matching_checksum(
    cache_copy: Path, filled: Filled, image_size: int
) -> None:
    """The fingerprint check: an entry whose model does not take the key's image size is never used."""
    other_size = CacheKey(_key(image_size).weights_identity, image_size * 2, _key(image_size).converter)
    write_entry(LocalStore(str(cache_copy)), other_size, filled[1])

    with pytest.raises(UnusableEntryError, match=rf"not a {image_size * 2}px MobileNetV2"):
        read_entry(LocalStore(str(cache_copy)), other_size, "none")


def test_an_unusable_entry_is_logged_and_rebuilt_never_used(
    cache_copy: Path, filled: Filled, image_size: int, caplog
) -> None:
    key = _key(image_size)
    _flip_a_byte(cache_copy / f"{key.name}.tflite")

    with caplog.at_level(logging.INFO, logger=model_cache.__name__):
        model, source = load_or_compile("none", image_size, str(cache_copy))

    assert source == SOURCE_COMPILED
    assert "is unusable: its flatbuffer's sha256 differs" in caplog.text
    assert "compiled and cached" in caplog.text
    assert model.fingerprint == filled[1].fingerprint
    repaired = read_entry(LocalStore(str(cache_copy)), key, "none")
    assert repaired is not None
    assert repaired.tflite == model.tflite


def test_an_interrupted_write_leaves_no_entry_and_no_half_file(
    tmp_path: Path, filled: Filled, image_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, store = _key(image_size), LocalStore(str(tmp_path))
    real_replace = os.replace

    def fail_on_the_manifest(source: str, target: Path) -> None:
        if str(target).endswith(".json"):
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(model_cache.os, "replace", fail_on_the_manifest)

    with pytest.raises(OSError, match="disk full"):
        write_entry(store, key, filled[1])

    assert read_entry(store, key, "none") is None
    assert [path.name for path in tmp_path.iterdir()] == [f"{key.name}.tflite"]


def test_without_tensorflow_a_cached_model_is_still_found(
    filled: Filled, image_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that cannot compile (no TensorFlow installed) takes the newest converter's entry."""
    monkeypatch.setattr(model_cache, "installed_version", lambda *names: None)

    model, source = load_or_compile("none", image_size, str(filled[0]))

    assert (source, model.tflite) == (SOURCE_CACHE, filled[1].tflite)


def test_without_tensorflow_an_empty_cache_is_one_clear_error(
    tmp_path: Path, image_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_cache, "installed_version", lambda *names: None)

    with pytest.raises(JobInputError, match=r"--model-cache .* holds no usable .* TensorFlow is not installed here"):
        load_or_compile("none", image_size, str(tmp_path))


BLOCKED_IMPORT = """
from pathlib import Path
Path({marker!r}).write_text(__name__)
raise ImportError(f"{{__name__}} is not installed on this node")
"""


def test_a_run_with_its_model_cached_never_imports_tensorflow(
    spark_submit, filled: Filled, image_tree: dict, image_size: int, tmp_path: Path
) -> None:
    """spark-submit whose driver and executors cannot import TensorFlow nor Keras (each attempt leaves a mark)."""
    blocked = tmp_path / "no-tensorflow"
    for module in ("tensorflow", "keras"):
        (blocked / module).mkdir(parents=True)
        marker = tmp_path / f"{module}-imported"
        (blocked / module / "__init__.py").write_text(BLOCKED_IMPORT.format(marker=str(marker)))
    features, summary = tmp_path / "features", tmp_path / "summary.json"

    result = spark_submit(
        SPARK_JOBS_DIR / "extract_features.py",
        *("--images", str(image_tree["root"]), "--features", str(features), "--weights", "none"),
        *("--image-size", str(image_size), "--model-cache", str(filled[0]), "--summary-json", str(summary)),
        env={"PYTHONPATH": str(blocked)},
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "model from cache" in output
    assert sorted(path.name for path in tmp_path.glob("*-imported")) == []
    document = json.loads(summary.read_text())
    assert document["model_source"] == SOURCE_CACHE
    rows = pd.read_parquet(features)
    assert document["n_featurized"] == len(rows) > 0
    good = rows[rows["path"].isin({f"file:{path}" for path in image_tree["good"]})]
    images = np.stack([decode_image(Path(p.removeprefix("file:")).read_bytes(), image_size) for p in good["path"]])
    assert len(good) == len(image_tree["good"])
    expected = build_keras_model("none", image_size).predict(images, verbose=0)
    assert _cosine(np.stack(good["features"].to_numpy()), expected).min() >= 0.9999
