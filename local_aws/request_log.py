"""Every request the endpoint answers, recorded, and optionally delayed as a remote service would delay it.

The record is what a test or a benchmark needs to count a job's requests by service, operation and
object (``GET /bucket/key``), to check that reading an image costs one request, or a rerun none.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

# A run of `make airflow` keeps sensors polling for hours: keep the newest requests only.
MAX_RECORDED = 200_000
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Request:
    """One answered request.

    :param service: the service it was signed for (``s3``, ``elasticmapreduce``, ``sts``...).
    :param operation: the JSON APIs' ``X-Amz-Target`` operation (``DescribeCluster``), else empty.
    :param path: the URL path, decoded: ``/bucket/key`` for path-style S3.
    :param region: the region it was signed for (its credential scope's), empty when unsigned.
    """

    service: str
    operation: str
    method: str
    path: str
    query: str
    status: int
    region: str = ""


class RequestLog:
    """A thread-safe record of the newest :data:`MAX_RECORDED` requests."""

    def __init__(self) -> None:
        self._requests: deque[Request] = deque(maxlen=MAX_RECORDED)
        self._lock = threading.Lock()

    def record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def __iter__(self) -> Iterator[Request]:
        with self._lock:
            return iter(list(self._requests))

    def __len__(self) -> int:
        with self._lock:
            return len(self._requests)


def requests_under(requests: Iterable[Request], bucket: str, prefix: str) -> list[Request]:
    """Path-style S3 requests about the objects under ``bucket/prefix``: the objects, and listings of it."""
    return [r for r in requests if r.path.startswith(f"/{bucket}/{prefix}") or f"prefix={prefix}" in unquote(r.query)]


def request_service(environ: dict[str, Any]) -> str:
    """The service a request was signed for (``s3``, ``elasticmapreduce``...), empty when unsigned."""
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return scope["service"] if scope else ""


def request_region(environ: dict[str, Any]) -> str:
    """The region a request was signed for, empty when unsigned (or presigned)."""
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return scope["region"] if scope else ""


def drain_body(environ: dict[str, Any]) -> None:
    """Read the body of a request answered without it (a fault, a refusal), so that the connection's next request
    starts where it should."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    if environ.get("wsgi.input_terminated"):
        while stream.read(1 << 16):
            pass
        return
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            break
        remaining -= len(chunk)


def recorded(app: WsgiApp, log: RequestLog, latency_seconds: Callable[[], float]) -> WsgiApp:
    """``app`` with every request recorded in ``log``, each answered ``latency_seconds()`` late."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        latency = latency_seconds()
        if latency > 0:
            time.sleep(latency)
        service = request_service(environ)
        target = environ.get("HTTP_X_AMZ_TARGET", "")

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            log.record(
                Request(
                    service=service,
                    operation=target.rpartition(".")[2],
                    method=environ.get("REQUEST_METHOD", ""),
                    path=unquote(environ.get("PATH_INFO", "")),
                    query=environ.get("QUERY_STRING", ""),
                    status=int(status.split(" ", 1)[0]),
                    region=request_region(environ),
                )
            )
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wsgi
