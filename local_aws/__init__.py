"""A local AWS endpoint for development: moto's S3 and EMR, with EMR steps run by the project's Spark.

Dev-only tooling: ``dags/`` and ``spark_jobs/`` never import it; they only see an endpoint URL.
Start it with ``python -m local_aws serve`` or, from Python, ``with EmbeddedAws(port=0) as aws: ...``.
"""

from local_aws.server import EmbeddedAws

__all__ = ["EmbeddedAws"]
