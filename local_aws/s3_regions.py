"""S3's answer to a node's request signed for another region than its bucket's: AuthorizationHeaderMalformed.

A request signed for one region that reaches a bucket of another is refused by S3 (400
AuthorizationHeaderMalformed, the bucket's region in ``<Region>`` and ``x-amz-bucket-region``), and AWS's
SDKs then retry it in that region. On an EMR node it means that a client was given no region, or a wrong
one: given none, the AWS CLI (v1, or v2 when the instance metadata does not answer) and boto3 sign for
us-east-1 and send to S3's global endpoint, which a private subnet's S3 gateway endpoint, being regional,
does not serve: there the request gets no answer at all, and the SDK's retry never happens.

Every request comes to this one endpoint whatever its region, so the endpoint refuses, as S3 does, the
requests of a cluster's nodes (the sessions of ``iam_enforcement.node_credentials``) signed for a region
other than their bucket's, and logs a warning; the request log keeps the region each request was signed for
(``request_log.Request.region``), so that a test can require that a node's requests never were: the SDK's
retry would hide the refusal otherwise. What it cannot show is the global endpoint's silence from a private
subnet. Requests of other principals are left alone (the Airflow side and the tests' clients name their
region), and only path-style requests name their bucket, as the endpoint's clients send them.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from local_aws.iam_enforcement import is_node_session
from local_aws.request_log import WsgiApp, drain_body
from local_aws.s3_state import backend as s3_backend

logger = logging.getLogger(__name__)

_SCOPE = re.compile(r"(?:Credential=)?(?P<key>[^/\s]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


def signing_scope(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """The access key, region and service a request was signed for (header or presigned URL), or None."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    credential = header.partition("Credential=")[2] if "Credential=" in header else ""
    if not credential:
        credential = (parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential") or [""])[0]
    match = _SCOPE.match(credential)
    return (match["key"], match["region"], match["service"]) if match else None


def _bucket_region(environ: dict[str, Any]) -> tuple[str, str] | None:
    name = environ.get("PATH_INFO", "").lstrip("/").partition("/")[0]
    bucket = s3_backend().buckets.get(name) if name else None
    return (name, bucket.region_name) if bucket is not None else None


def _refusal(method: str, signed: str, expected: str) -> tuple[str, list[tuple[str, str]], bytes]:
    message = f"The authorization header is malformed; the region '{signed}' is wrong; expecting '{expected}'"
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        b""
        if method == "HEAD"
        else (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>'
            f"<Message>{escape(message)}</Message><Region>{escape(expected)}</Region>"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        ).encode()
    )
    headers = [
        ("Content-Type", "application/xml"),
        ("Content-Length", str(len(body))),
        ("x-amz-bucket-region", expected),
        ("x-amz-request-id", request_id),
    ]
    return "400 Bad Request", headers, body


def nodes_sign_for_their_bucket_s_region(app: WsgiApp) -> WsgiApp:
    """``app``, refusing a node's S3 request signed for a region other than its bucket's, as S3 does."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        scope = signing_scope(environ)
        if scope is not None and scope[2] == "s3" and is_node_session(scope[0]):
            found = _bucket_region(environ)
            if found is not None and found[1] != scope[1]:
                method = environ.get("REQUEST_METHOD", "")
                logger.warning(
                    "node request %s %s signed for %s refused: bucket %s is in %s (AuthorizationHeaderMalformed; "
                    "from a private subnet S3's global endpoint would not even answer): give the node's client "
                    "its region",
                    method,
                    environ.get("PATH_INFO", ""),
                    scope[1],
                    found[0],
                    found[1],
                )
                drain_body(environ)
                status, headers, body = _refusal(method, scope[1], found[1])
                start_response(status, headers)
                return [body]
        return app(environ, start_response)

    return wsgi
