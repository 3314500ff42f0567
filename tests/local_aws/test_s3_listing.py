"""Listings of a versioned bucket name no folder whose objects were all deleted, as on AWS (local_aws.s3_listing)."""

from __future__ import annotations


def test_a_folder_of_deleted_objects_is_not_listed(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key in ("out/_temporary/0/task_1/part-0", "out/_temporary/0/task_2/part-0"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "out/_temporary/0/task_1/part-0"}]})

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="out/_temporary/0/", Delimiter="/")

    assert [folder["Prefix"] for folder in listed.get("CommonPrefixes", [])] == ["out/_temporary/0/task_2/"]
