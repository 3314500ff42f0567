"""Steps see the S3 prefixes they name as local folders, and what they write there is published back."""

from __future__ import annotations

import json

import pytest

from local_aws.s3_mirror import S3Mirror, S3Prefix

LIST_TREE = (
    "import json, pathlib, sys; root = pathlib.Path(sys.argv[1]); "
    "tree = {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob('*')) if p.is_file()}; "
    "pathlib.Path(sys.argv[2]).write_text(json.dumps(tree))"
)


def read_json(s3, bucket: str, key: str):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_step_sees_every_object_under_an_input_prefix_including_keys_with_spaces(
    start_cluster, python_step, s3, bucket
):
    for key, body in {
        "images/Apple Red 1/r 0.jpg": "r0",
        "images/Apple Red 1/r 1.jpg": "r1",
        "images/Kiwi/k.jpg": "k",
    }.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    s3.put_object(Bucket=bucket, Key="images-old/ignored.jpg", Body=b"x")
    cluster = start_cluster([python_step("list", LIST_TREE, f"s3://{bucket}/images/", f"s3://{bucket}/tree.json")])

    assert [step["Status"]["State"] for step in cluster.wait_for_steps()] == ["COMPLETED"]
    assert read_json(s3, bucket, "tree.json") == {
        "Apple Red 1/r 0.jpg": "r0",
        "Apple Red 1/r 1.jpg": "r1",
        "Kiwi/k.jpg": "k",
    }


def test_output_prefix_that_does_not_exist_yet_has_no_local_folder_but_a_parent(start_cluster, python_step, s3, bucket):
    check = (
        "import json, os, pathlib, sys; out = sys.argv[1].rstrip('/'); "
        "pathlib.Path(sys.argv[2]).write_text(json.dumps([os.path.exists(out), os.path.isdir(os.path.dirname(out))]))"
    )
    cluster = start_cluster([python_step("check", check, f"s3://{bucket}/runs/42/pca/", f"s3://{bucket}/check.json")])

    cluster.wait_for_steps()

    assert read_json(s3, bucket, "check.json") == [False, True]


def test_step_publishes_new_changed_and_deleted_files_and_leaves_unchanged_ones(start_cluster, python_step, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for name in ("keep", "change", "delete"):
        s3.put_object(Bucket=bucket, Key=f"features/{name}.txt", Body=name.encode())
    edit = (
        "import pathlib, sys; out = pathlib.Path(sys.argv[1]); (out / 'change.txt').write_text('changed'); "
        "(out / 'delete.txt').unlink(); (out / 'new.txt').write_text('new')"
    )
    cluster = start_cluster([python_step("edit", edit, f"s3://{bucket}/features/")])

    cluster.wait_for_steps()

    versions = s3.list_object_versions(Bucket=bucket, Prefix="features/")
    puts = {}
    for version in versions["Versions"]:
        puts[version["Key"]] = puts.get(version["Key"], 0) + 1
    assert puts == {"features/keep.txt": 1, "features/change.txt": 2, "features/delete.txt": 1, "features/new.txt": 1}
    assert [marker["Key"] for marker in versions.get("DeleteMarkers", [])] == ["features/delete.txt"]
    assert s3.get_object(Bucket=bucket, Key="features/change.txt")["Body"].read() == b"changed"


def test_later_step_sees_objects_changed_and_deleted_since_the_earlier_one(start_cluster, python_step, s3, bucket):
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"first")
    s3.put_object(Bucket=bucket, Key="in/b.txt", Body=b"gone soon")
    cluster = start_cluster([python_step("before", LIST_TREE, f"s3://{bucket}/in/", f"s3://{bucket}/before.json")])
    cluster.wait_for_steps()
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"second")
    s3.delete_object(Bucket=bucket, Key="in/b.txt")

    cluster.add_steps(python_step("after", LIST_TREE, f"s3://{bucket}/in/", f"s3://{bucket}/after.json"))
    cluster.wait_for_steps()

    assert read_json(s3, bucket, "before.json") == {"a.txt": "first", "b.txt": "gone soon"}
    assert read_json(s3, bucket, "after.json") == {"a.txt": "second"}


def test_staging_downloads_only_new_or_changed_objects(aws, s3, bucket, tmp_path):
    mirror = S3Mirror(s3=s3, root=tmp_path, region=aws.region)
    images = S3Prefix(bucket, "images")
    s3.put_object(Bucket=bucket, Key="images/a.jpg", Body=b"a")
    s3.put_object(Bucket=bucket, Key="images/b.jpg", Body=b"b")
    first = mirror.stage([images]).counts
    s3.put_object(Bucket=bucket, Key="images/b.jpg", Body=b"b2")
    s3.put_object(Bucket=bucket, Key="images/c.jpg", Body=b"c")

    second = mirror.stage([images]).counts

    assert (first.transferred, first.unchanged) == (2, 0)
    assert (second.transferred, second.unchanged) == (2, 1)
    assert (tmp_path / bucket / "images" / "b.jpg").read_bytes() == b"b2"


def test_staging_a_missing_bucket_fails_the_step_with_its_name(start_cluster, python_step):
    cluster = start_cluster([python_step("read", "pass", "s3://no-such-bucket-here/images/")])

    (step,) = cluster.wait_for_steps()

    assert step["Status"]["State"] == "FAILED"
    assert "no-such-bucket-here" in step["Status"]["FailureDetails"]["Message"]


@pytest.mark.parametrize(
    ("uri", "prefix"),
    [
        ("s3://fruits/images/", S3Prefix("fruits", "images")),
        ("s3a://fruits/images/Apple Red 1", S3Prefix("fruits", "images/Apple Red 1")),
        ("s3n://fruits", S3Prefix("fruits", "")),
        ("s3://fruits/images/*/r_*.jpg", S3Prefix("fruits", "images")),
    ],
)
def test_prefix_of_a_uri_is_the_folder_before_any_wildcard(uri, prefix):
    assert S3Prefix.from_uri(uri) == prefix
