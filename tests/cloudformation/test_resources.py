"""The bucket is private, encrypted, TLS-only and versioned, its logs and old versions expire, and the nodes
require IMDSv2 on encrypted disks.
"""

from __future__ import annotations

from fruits_airflow.paths import LOGS_PREFIX


def test_the_bucket_blocks_every_kind_of_public_access(resources):
    assert resources["Bucket"]["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert resources["Bucket"]["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_the_bucket_encrypts_with_s3_managed_keys_so_etags_stay_md5s(resources):
    (rule,) = resources["Bucket"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]

    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_the_bucket_and_its_data_outlive_the_stack(template):
    bucket = template["Resources"]["Bucket"]

    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_the_clusters_logs_expire_and_nothing_else_does(resources, template):
    rules = resources["Bucket"]["LifecycleConfiguration"]["Rules"]
    expiring = [rule for rule in rules if "ExpirationInDays" in rule]

    assert [(rule["Prefix"], rule["Status"]) for rule in expiring] == [(LOGS_PREFIX, "Enabled")]
    assert expiring[0]["ExpirationInDays"] == template["Parameters"]["LogRetentionDays"]["Default"]


def test_the_bucket_keeps_removed_images_restorable_then_expires_them(resources, template):
    rules = {rule["Id"]: rule for rule in resources["Bucket"]["LifecycleConfiguration"]["Rules"]}

    assert resources["Bucket"]["VersioningConfiguration"] == {"Status": "Enabled"}
    noncurrent = rules["expire-noncurrent-versions"]
    assert noncurrent["Status"] == "Enabled"
    assert "Prefix" not in noncurrent
    assert (
        noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"]
        == (template["Parameters"]["NoncurrentVersionDays"]["Default"])
    )
    assert rules["remove-expired-delete-markers"]["ExpiredObjectDeleteMarker"] is True


def test_the_security_configuration_requires_imdsv2(resources):
    settings = resources["EmrSecurityConfiguration"]["SecurityConfiguration"]

    assert settings["InstanceMetadataServiceConfiguration"]["MinimumInstanceMetadataServiceVersion"] == 2


def test_the_security_configuration_encrypts_local_and_ebs_disks_with_the_stacks_key(resources, arn):
    encryption = resources["EmrSecurityConfiguration"]["SecurityConfiguration"]["EncryptionConfiguration"]

    assert encryption["EnableAtRestEncryption"] is True
    assert encryption["AtRestEncryptionConfiguration"]["LocalDiskEncryptionConfiguration"] == {
        "EncryptionKeyProviderType": "AwsKms",
        "AwsKmsKey": arn("LocalDiskKey"),
        "EnableEbsEncryption": True,
    }
    assert resources["LocalDiskKey"]["EnableKeyRotation"] is True
