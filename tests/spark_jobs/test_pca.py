"""The PCA job against an independent numpy computation on the same standardized matrix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyspark.sql import SparkSession

from fruits_spark.errors import JobInputError
from fruits_spark.extract_features import FEATURES_SCHEMA
from fruits_spark.pca import PcaConfig, choose_k, parse_args, run
from fruits_spark.pca_fit import PcaFit
from tests.spark_jobs.numpy_pca import NumpyPca

N_IMAGES, N_FEATURES = 80, 24
LABELS = ("Apple Red 1", "Banana", "Kiwi")


def _planted_features(seed: int = 3) -> np.ndarray:
    """Features with a clearly decaying spectrum (distinct eigenvalues) and one constant column."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10.0, 0.1, N_FEATURES)
    mixing = np.linalg.qr(rng.normal(size=(N_FEATURES, N_FEATURES)))[0]
    features = (rng.normal(size=(N_IMAGES, N_FEATURES)) * scales) @ mixing.T + rng.normal(size=N_FEATURES)
    features[:, 5] = 0.25
    return features.astype(np.float32)


def write_features(spark: SparkSession, uri: str, features: np.ndarray) -> list[tuple[str, str]]:
    keys = [(f"file:/images/{LABELS[i % 3]}/{i}_100.jpg", LABELS[i % 3]) for i in range(len(features))]
    rows = [(path, label, vector.tolist(), 100, 0) for (path, label), vector in zip(keys, features, strict=True)]
    spark.createDataFrame(rows, FEATURES_SCHEMA).coalesce(2).write.mode("overwrite").parquet(uri)
    return keys


def test_with_images_the_pca_covers_each_listed_image_once_under_its_current_label(
    spark: SparkSession, planted: np.ndarray, tmp_path: Path
) -> None:
    images, current = tmp_path / "images", planted[:60]
    rows = []
    for index, vector in enumerate(current):
        label = LABELS[index % 3]
        image = images / label / f"{index}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"x" * (index + 1))
        modified = image.stat().st_mtime_ns // 1_000_000
        rows.append((f"file:{image}", label, vector.tolist(), index + 1, modified))
        if index % 10 == 0:  # an earlier content of the same file, under its earlier label
            rows.append((f"file:{image}", "Old", planted[60 + index // 10].tolist(), index + 1, modified - 5000))
    for index, vector in enumerate(planted[70:]):  # images since removed or moved away
        rows.append((f"file:{images}/Kiwi/gone_{index}.jpg", "Kiwi", vector.tolist(), 1, 0))
    features = str(tmp_path / "features")
    spark.createDataFrame(rows, FEATURES_SCHEMA).coalesce(2).write.parquet(features)
    argv = ["--features", features, "--output", str(tmp_path / "pca"), "--images", str(images), "--k", "3"]

    fit = run(spark, parse_args(argv))

    output = spark.read.parquet(str(tmp_path / "pca")).collect()
    assert sorted(row.path for row in output) == sorted(f"file:{image}" for image in images.rglob("*.jpg"))
    assert {row.label for row in output} == set(LABELS)
    assert fit.n_images == len(current)
    np.testing.assert_allclose(fit.explained_variance_ratio, NumpyPca(current).ratios, atol=1e-5)


def test_a_manifest_of_another_listing_is_refused(spark: SparkSession, features_uri: str, tmp_path: Path) -> None:
    images = tmp_path / "images" / "Kiwi"
    images.mkdir(parents=True)
    (images / "0.jpg").write_bytes(b"kiwi")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"images_digest": "another listing", "n_features": 1}))
    argv = ["--features", features_uri, "--output", str(tmp_path / "pca"), "--images", str(images.parent)]

    with pytest.raises(JobInputError, match=r"changed since extract_features listed them"):
        run(spark, parse_args([*argv, "--manifest", str(manifest)]))


@pytest.fixture(scope="module")
def planted() -> np.ndarray:
    return _planted_features()


@pytest.fixture(scope="module")
def oracle(planted: np.ndarray) -> NumpyPca:
    return NumpyPca(planted)


@pytest.fixture(scope="module")
def features_uri(spark: SparkSession, planted: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("pca") / "features")
    write_features(spark, uri, planted)
    return uri


@pytest.fixture(scope="module")
def pca_run(spark: SparkSession, features_uri: str) -> tuple[PcaConfig, PcaFit]:
    out = Path(features_uri).parent / "run"
    config = parse_args(["--features", features_uri, "--output", str(out / "pca"), "--variance", "0.9"])
    return config, run(spark, config)


def _sign_aligned(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Flip each column of ``actual`` to the sign of ``expected``: PCA axes are defined up to sign."""
    signs = np.sign((actual * expected).sum(axis=0))
    return actual * signs


def test_explained_variance_ratios_match_numpy(pca_run: tuple[PcaConfig, PcaFit], oracle: NumpyPca) -> None:
    np.testing.assert_allclose(pca_run[1].explained_variance_ratio, oracle.ratios, atol=1e-6)


def test_components_match_numpy_up_to_sign(pca_run: tuple[PcaConfig, PcaFit], oracle: NumpyPca) -> None:
    fit = pca_run[1]
    # The constant column leaves one zero eigenvalue, whose axis is arbitrary: compare the rest.
    informative = N_FEATURES - 1
    expected = oracle.axes[:, :informative]

    np.testing.assert_allclose(_sign_aligned(fit.components[:, :informative], expected), expected, atol=1e-6)


def test_k_is_the_smallest_reaching_the_threshold(pca_run: tuple[PcaConfig, PcaFit], oracle: NumpyPca) -> None:
    cumulative = np.cumsum(oracle.ratios)
    k = pca_run[1].k

    assert cumulative[k - 1] >= 0.9
    assert cumulative[k - 2] < 0.9


def test_pca_features_are_the_numpy_projection(
    spark: SparkSession, pca_run: tuple[PcaConfig, PcaFit], oracle: NumpyPca, planted: np.ndarray
) -> None:
    config, fit = pca_run
    rows = {row.path: np.asarray(row.pca_features) for row in spark.read.parquet(config.output).collect()}
    keys = [f"file:/images/{LABELS[i % 3]}/{i}_100.jpg" for i in range(len(planted))]
    actual = np.stack([rows[key] for key in keys])
    expected = oracle.standardized @ oracle.axes[:, : fit.k]

    assert actual.shape == (N_IMAGES, fit.k)
    np.testing.assert_allclose(_sign_aligned(actual, expected), expected, atol=1e-4)


def test_output_has_the_contract_schema_and_is_marked_complete(
    spark: SparkSession, pca_run: tuple[PcaConfig, PcaFit]
) -> None:
    config, _ = pca_run
    output = spark.read.parquet(config.output)

    assert [(field.name, field.dataType.simpleString()) for field in output.schema] == [
        ("path", "string"),
        ("label", "string"),
        ("pca_features", "array<float>"),
    ]
    assert output.count() == N_IMAGES
    assert Path(config.output, "_SUCCESS").is_file()


def test_report_is_written_beside_the_output(pca_run: tuple[PcaConfig, PcaFit], oracle: NumpyPca) -> None:
    config, fit = pca_run
    report = Path(config.report)
    summary = json.loads((report / "explained_variance.json").read_text())

    assert report == Path(config.output).parent / "report"
    assert (summary["k"], summary["threshold"], summary["n_images"], summary["n_features"]) == (
        fit.k,
        0.9,
        N_IMAGES,
        N_FEATURES,
    )
    np.testing.assert_allclose(summary["explained_variance_ratio"], oracle.ratios, atol=1e-6)
    np.testing.assert_allclose(summary["cumulative"], np.cumsum(oracle.ratios), atol=1e-6)


def test_report_csv_exports_every_image(pca_run: tuple[PcaConfig, PcaFit]) -> None:
    config, fit = pca_run
    with open(Path(config.report, "pca_features.csv"), newline="") as handle:
        rows = list(csv.reader(handle))

    assert rows[0] == ["path", "label", *[f"pc{i}" for i in range(1, fit.k + 1)]]
    assert len(rows) == N_IMAGES + 1
    assert {row[1] for row in rows[1:]} == set(LABELS)
    assert not any(name.startswith("_csv") for name in (p.name for p in Path(config.report).iterdir()))


@pytest.mark.parametrize("name", ["cumulative_variance.png", "pca_scatter.png"])
def test_report_plots_are_images(pca_run: tuple[PcaConfig, PcaFit], name: str) -> None:
    with Image.open(Path(pca_run[0].report, name)) as plot:
        assert plot.format == "PNG"
        assert plot.width >= 600
        # A plot, not a blank canvas: many distinct colours.
        assert len(plot.convert("RGB").getcolors(maxcolors=1_000_000)) > 50


def test_fixed_k_keeps_exactly_k(spark: SparkSession, features_uri: str, tmp_path: Path, oracle: NumpyPca) -> None:
    config = parse_args(["--features", features_uri, "--output", str(tmp_path / "pca"), "--k", "3"])

    fit = run(spark, config)

    assert fit.k == 3
    assert {len(row.pca_features) for row in spark.read.parquet(config.output).collect()} == {3}
    summary = json.loads(Path(config.report, "explained_variance.json").read_text())
    assert summary["threshold"] is None
    np.testing.assert_allclose(summary["explained_variance_ratio"], oracle.ratios, atol=1e-6)


@pytest.mark.parametrize(
    ("ratios", "threshold", "k"),
    [
        ([0.5, 0.3, 0.2], 0.5, 1),
        ([0.5, 0.3, 0.2], 0.51, 2),
        ([0.5, 0.3, 0.2], 0.8, 2),
        ([0.5, 0.3, 0.2], 1.0, 3),
        ([0.6, 0.2, 0.2 - 1e-12], 1.0, 3),
    ],
)
def test_choose_k(ratios: list[float], threshold: float, k: int) -> None:
    assert choose_k(np.array(ratios), threshold) == k


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variance", "0"], r"--variance 0.0 is out of range"),
        (["--variance", "1.5"], r"--variance 1.5 is out of range"),
        (["--k", "0"], r"--k 0 is out of range"),
        (["--report", "/out/pca/report"], r"--report /out/pca/report is inside --output"),
    ],
)
def test_bad_arguments_are_clear_errors(argv: list[str], message: str) -> None:
    with pytest.raises(JobInputError, match=message):
        parse_args(["--features", "/f", "--output", "/out/pca", *argv])


def test_k_larger_than_the_features_is_refused(spark: SparkSession, features_uri: str, tmp_path: Path) -> None:
    config = parse_args(["--features", features_uri, "--output", str(tmp_path / "pca"), "--k", "99"])

    with pytest.raises(JobInputError, match="--k 99 exceeds the 24 features"):
        run(spark, config)
    assert not Path(config.output, "_SUCCESS").exists()


def test_failed_rerun_unmarks_the_earlier_output(spark: SparkSession, features_uri: str, tmp_path: Path) -> None:
    output = str(tmp_path / "pca")
    run(spark, parse_args(["--features", features_uri, "--output", output, "--k", "2"]))
    assert Path(output, "_SUCCESS").is_file()

    with pytest.raises(JobInputError):
        run(spark, parse_args(["--features", features_uri, "--output", output, "--k", "99"]))

    assert not Path(output, "_SUCCESS").exists()


def test_missing_features_are_a_clear_error(spark: SparkSession, tmp_path: Path) -> None:
    config = parse_args(["--features", str(tmp_path / "nowhere"), "--output", str(tmp_path / "pca")])

    with pytest.raises(JobInputError, match="does not exist; run extract_features first"):
        run(spark, config)


def test_unfinished_features_are_a_clear_error(spark: SparkSession, planted: np.ndarray, tmp_path: Path) -> None:
    uri = str(tmp_path / "features")
    write_features(spark, uri, planted)
    Path(uri, "_SUCCESS").unlink()

    with pytest.raises(JobInputError, match="has no _SUCCESS marker"):
        run(spark, parse_args(["--features", uri, "--output", str(tmp_path / "pca")]))


def test_a_single_image_is_a_clear_error(spark: SparkSession, planted: np.ndarray, tmp_path: Path) -> None:
    uri = str(tmp_path / "features")
    write_features(spark, uri, planted[:1])

    with pytest.raises(JobInputError, match="holds 1 image"):
        run(spark, parse_args(["--features", uri, "--output", str(tmp_path / "pca")]))


def test_exactly_two_images_are_enough_for_a_pca(spark: SparkSession, planted: np.ndarray, tmp_path: Path) -> None:
    uri = str(tmp_path / "features")
    write_features(spark, uri, planted[:2])
    config = parse_args(["--features", uri, "--output", str(tmp_path / "pca")])

    fit = run(spark, config)

    assert (fit.n_images, fit.k) == (2, 1)
    assert spark.read.parquet(config.output).count() == 2


def test_a_single_label_runs_the_pca_and_the_report_says_separability_cannot_be_measured(
    spark: SparkSession, planted: np.ndarray, tmp_path: Path
) -> None:
    uri = str(tmp_path / "features")
    rows = [(f"file:/images/Kiwi/{i}_100.jpg", "Kiwi", vector.tolist(), 100, 0) for i, vector in enumerate(planted[:6])]
    spark.createDataFrame(rows, FEATURES_SCHEMA).write.parquet(uri)
    config = parse_args(["--features", uri, "--output", str(tmp_path / "pca")])

    fit = run(spark, config)

    assert fit.n_images == 6
    report = json.loads(Path(config.report, "separability.json").read_text())
    assert report["status"] == "skipped"
    assert report["reason"].startswith("1 label(s): separability cannot be measured")
