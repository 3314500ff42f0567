from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from fruits_airflow import upload
from fruits_airflow.s3_objects import PART_SIZE, local_etag, upload_file
from fruits_airflow.upload import upload_new_images

LABELS = {"Apple Braeburn": 4, "Banana": 3, "Cherry 1": 5}


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """A landing folder of 12 small 'images' in three labels, each with distinct content."""
    root = tmp_path / "landing"
    for label, count in LABELS.items():
        (root / label).mkdir(parents=True)
        for index in range(count):
            (root / label / f"{index}_100.jpg").write_bytes(f"{label}/{index}".encode() * 50)
    return root


def keys(s3, bucket, prefix="images/"):
    return sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def test_first_run_uploads_every_image_under_its_label(s3, bucket, landing):
    result = upload_new_images(s3, landing, bucket)

    assert (result.uploaded, result.removed, result.n_images) == (12, 0, 12)
    assert "images/Apple Braeburn/0_100.jpg" in keys(s3, bucket)
    assert len(keys(s3, bucket)) == 12
    body = s3.get_object(Bucket=bucket, Key="images/Banana/2_100.jpg")["Body"].read()
    assert body == (landing / "Banana" / "2_100.jpg").read_bytes()


def test_rerun_with_nothing_new_uploads_nothing(s3, bucket, landing):
    upload_new_images(s3, landing, bucket)

    assert upload_new_images(s3, landing, bucket).uploaded == 0


def test_a_new_image_is_the_only_upload(s3, bucket, landing):
    upload_new_images(s3, landing, bucket)
    (landing / "Banana" / "9_100.jpg").write_bytes(b"new banana")

    assert upload_new_images(s3, landing, bucket).uploaded == 1
    assert "images/Banana/9_100.jpg" in keys(s3, bucket)


def test_an_image_changed_to_the_same_size_is_uploaded_again(s3, bucket, landing):
    upload_new_images(s3, landing, bucket)
    image = landing / "Cherry 1" / "3_100.jpg"
    changed = image.read_bytes()[::-1]
    image.write_bytes(changed)

    assert upload_new_images(s3, landing, bucket).uploaded == 1
    assert s3.get_object(Bucket=bucket, Key="images/Cherry 1/3_100.jpg")["Body"].read() == changed


def test_files_spark_could_not_read_back_are_skipped(s3, bucket, landing):
    (landing / "Banana" / ".DS_Store").write_bytes(b"x")
    (landing / "Banana" / "notes.txt").write_bytes(b"x")
    (landing / "top_level.jpg").write_bytes(b"x")
    (landing / "_tmp").mkdir()
    (landing / "_tmp" / "0.jpg").write_bytes(b"x")
    (landing / "Kiwi").mkdir()
    (landing / "Kiwi" / "a:b.jpg").write_bytes(b"x")
    (landing / "Kiwi" / "deeper").mkdir()
    (landing / "Kiwi" / "deeper" / "0.jpg").write_bytes(b"x")

    assert upload_new_images(s3, landing, bucket).uploaded == 12
    assert not [key for key in keys(s3, bucket) if "Kiwi" in key or "_tmp" in key or "notes" in key]


def test_images_with_upper_case_or_png_suffixes_are_uploaded(s3, bucket, tmp_path):
    (tmp_path / "Pear").mkdir()
    (tmp_path / "Pear" / "0.JPG").write_bytes(b"a")
    (tmp_path / "Pear" / "1.png").write_bytes(b"b")

    assert upload_new_images(s3, tmp_path, bucket).uploaded == 2


def test_uploads_run_in_parallel(s3, bucket, landing, monkeypatch):
    threads: set[str] = set()
    lock = threading.Lock()
    both_started = threading.Barrier(2, timeout=10)

    def recording_upload(client, path, bucket, key):
        with lock:
            first_upload_of_thread = threading.current_thread().name not in threads
            threads.add(threading.current_thread().name)
            wait = first_upload_of_thread and len(threads) <= 2
        if wait:
            both_started.wait()  # passes only when two uploads are in flight at once
        upload_file(client, path, bucket, key)

    monkeypatch.setattr(upload, "upload_file", recording_upload)

    assert upload_new_images(s3, landing, bucket, max_workers=4).uploaded == 12
    assert len(threads) >= 2


def test_progress_is_logged_with_counts(s3, bucket, landing, caplog):
    with caplog.at_level(logging.INFO, logger="fruits_airflow.upload"):
        upload_new_images(s3, landing, bucket)

    progress = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Checked")]
    assert progress[-1].startswith("Checked 12/12 image(s) (100%), uploaded 12")
    assert len(progress) >= 5


def test_images_gone_from_the_landing_folder_are_removed_after_the_uploads(s3, bucket, landing, caplog):
    upload_new_images(s3, landing, bucket)
    (landing / "Banana" / "0_100.jpg").unlink()
    (landing / "Cherry 2").mkdir()
    (landing / "Cherry 1" / "1_100.jpg").rename(landing / "Cherry 2" / "1_100.jpg")

    with caplog.at_level(logging.INFO, logger="fruits_airflow.upload"):
        result = upload_new_images(s3, landing, bucket)

    assert (result.uploaded, result.removed, result.n_images) == (1, 2, 11)
    assert "images/Cherry 2/1_100.jpg" in keys(s3, bucket)
    assert {"images/Banana/0_100.jpg", "images/Cherry 1/1_100.jpg"} & set(keys(s3, bucket)) == set()
    removals = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Removed s3://")]
    assert removals == [
        f"Removed s3://{bucket}/images/Banana/0_100.jpg: no longer in the landing folder",
        f"Removed s3://{bucket}/images/Cherry 1/1_100.jpg: no longer in the landing folder",
    ]


def test_a_removed_image_stays_restorable_on_a_versioned_bucket(s3, bucket, landing):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    upload_new_images(s3, landing, bucket)
    original = (landing / "Banana" / "2_100.jpg").read_bytes()
    (landing / "Banana" / "2_100.jpg").unlink()

    upload_new_images(s3, landing, bucket)

    (kept,) = s3.list_object_versions(Bucket=bucket, Prefix="images/Banana/2_100.jpg")["Versions"]
    restored = s3.get_object(Bucket=bucket, Key="images/Banana/2_100.jpg", VersionId=kept["VersionId"])
    assert restored["Body"].read() == original


@pytest.mark.parametrize("emptied", ["every label", "all but one label"])
def test_a_landing_folder_that_would_remove_too_much_is_refused_and_changes_nothing(s3, bucket, landing, emptied):
    upload_new_images(s3, landing, bucket)
    before = keys(s3, bucket)
    for label in LABELS if emptied == "every label" else ["Apple Braeburn", "Cherry 1"]:
        for image in (landing / label).iterdir():
            image.unlink()
    (landing / "Banana" / "9_100.jpg").write_bytes(b"new banana")

    with pytest.raises(upload.RemovalRefusedError, match=r"would remove (12|9) of the 12 in images/ .* max_removal"):
        upload_new_images(s3, landing, bucket)

    assert keys(s3, bucket) == before


def test_the_removal_limit_is_a_share_of_the_images_in_s3(s3, bucket, landing):
    upload_new_images(s3, landing, bucket)
    for image in (landing / "Cherry 1").iterdir():  # 5 of the 12
        image.unlink()

    with pytest.raises(upload.RemovalRefusedError):
        upload_new_images(s3, landing, bucket, max_removal_share=0.4)
    assert upload_new_images(s3, landing, bucket, max_removal_share=0.5).removed == 5


def test_a_missing_landing_folder_names_the_variable_key(s3, bucket, tmp_path):
    with pytest.raises(FileNotFoundError, match="fix 'images_dir' in the Variable fruits_pipeline"):
        upload_new_images(s3, tmp_path / "nowhere", bucket)


@pytest.mark.parametrize("size", [0, 10, PART_SIZE - 1, PART_SIZE, PART_SIZE + 1])
def test_the_local_etag_is_the_one_s3_reports(s3, bucket, tmp_path, size):
    path = tmp_path / "blob.jpg"
    path.write_bytes(bytes(range(256)) * (size // 256) + b"z" * (size % 256))

    upload_file(s3, path, bucket, "blob.jpg")

    assert s3.head_object(Bucket=bucket, Key="blob.jpg")["ETag"].strip('"') == local_etag(path)
