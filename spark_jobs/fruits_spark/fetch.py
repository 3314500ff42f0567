"""Read input files on the executors: one GET per S3 object, many in flight while the model computes.

Spark's own file readers cost three or more S3 requests per named file (an existence check on the
driver, a listing job, then a status request before each GET), and read one file at a time per task:
at S3's 20-40 ms per request a task would wait far longer than it computes. The driver lists the
prefix once (fruits_spark.file_listing, with boto3 too) and the executors fetch only the files they
featurize, each with a single GET through boto3, ``FETCH_THREADS`` at a time per task.

boto3 finds its endpoint, credentials and region as every AWS SDK does: ``AWS_ENDPOINT_URL`` and the
``AWS_*`` variables where they are set (the embedded endpoint of local runs), else the instance role
and region of the EMR node, from its instance metadata.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fruits_spark.images import ImageRejectedError

# Requests in flight per task. At 30 ms per request 16 threads fetch ~500 images/s, several times what
# one core featurizes; locally (~1 ms) they cost nothing but idle threads.
FETCH_THREADS = 16
S3_SCHEMES = ("s3://", "s3a://", "s3n://")
GONE_REASON = "listed but gone when read (deleted or renamed during the run)"
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class FetchError(Exception):
    """An image that exists could not be read (access denied, endpoint unreachable): the run must fail.

    Raised on an executor; the driver finds its one-line message in the task failure (:func:`fetch_failure`).
    """


_FETCH_ERROR_LINE = re.compile(rf"{__name__}\.FetchError: (?P<message>.+)|^FetchError: (?P<bare>.+)", re.MULTILINE)


def fetch_failure(error: Exception) -> str | None:
    """The message of the :class:`FetchError` that failed a Spark task, or None if none did."""
    match = _FETCH_ERROR_LINE.search(str(error))
    return (match["message"] or match["bare"]).strip() if match else None


def split_s3_uri(uri: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of an ``s3://`` (``s3a://``, ``s3n://``) URI; None for any other path."""
    for scheme in S3_SCHEMES:
        if uri.startswith(scheme):
            bucket, _, key = uri[len(scheme) :].partition("/")
            return bucket, key
    return None


def local_path(uri: str) -> str:
    """The file a local URI names: Hadoop qualifies ``/x`` as ``file:/x`` (and keeps spaces as they are)."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    return uri


class Fetcher:
    """Fetches files' bytes by URI on a pool of threads; one per Python worker, made on first use.

    :param threads: requests in flight at once.
    """

    def __init__(self, threads: int = FETCH_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch")
        self._threads = threads
        self._s3: Any = None
        self._s3_lock = threading.Lock()

    def submit(self, uri: str) -> Future[bytes | ImageRejectedError]:
        """Start fetching ``uri``; the future holds its bytes, or the reason it is gone."""
        return self._pool.submit(self._fetch, uri)

    def prefetched(self, batches: Iterable[Iterable[str]]) -> Iterator[list[bytes | ImageRejectedError]]:
        """The contents of each batch of URIs, in order, fetching the next batch while this one is used."""
        in_flight: deque[list[Future[bytes | ImageRejectedError]]] = deque()
        for batch in batches:
            in_flight.append([self.submit(uri) for uri in batch])
            if len(in_flight) > 1:
                yield [future.result() for future in in_flight.popleft()]
        while in_flight:
            yield [future.result() for future in in_flight.popleft()]

    def _fetch(self, uri: str) -> bytes | ImageRejectedError:
        s3_location = split_s3_uri(uri)
        if s3_location is None:
            try:
                with open(local_path(uri), "rb") as stream:
                    return stream.read()
            except FileNotFoundError:
                return ImageRejectedError(GONE_REASON)
        return self._get_object(*s3_location)

    def _get_object(self, bucket: str, key: str) -> bytes | ImageRejectedError:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client().get_object(Bucket=bucket, Key=key)
            with response["Body"] as body:
                return bytes(body.read())
        except ClientError as error:
            details = error.response.get("Error", {})
            if details.get("Code") in _NOT_FOUND_CODES:
                return ImageRejectedError(GONE_REASON)
            raise FetchError(
                f"s3://{bucket}/{key} cannot be read ({details.get('Code')}: {details.get('Message')})"
            ) from None
        except BotoCoreError as error:  # the endpoint cannot be reached, or the credentials cannot be found
            raise FetchError(f"s3://{bucket}/{key} cannot be read ({error})") from None

    def _client(self) -> Any:
        with self._s3_lock:
            if self._s3 is None:
                self._s3 = new_s3_client(self._threads)
            return self._s3


def new_s3_client(connections: int = 10) -> Any:
    """A boto3 S3 client that retries as AWS advises, with ``connections`` requests in flight at most."""
    import boto3
    from botocore.config import Config

    config = Config(max_pool_connections=connections, retries={"mode": "standard", "max_attempts": 5})
    return boto3.session.Session().client("s3", config=config)


_FETCHER: Fetcher | None = None


def worker_fetcher() -> Fetcher:
    """This Python worker's fetcher: Spark reuses workers, so its threads and connections outlive a task."""
    global _FETCHER
    if _FETCHER is None:
        _FETCHER = Fetcher()
    return _FETCHER
