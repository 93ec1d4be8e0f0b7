"""Who is on an ADS stream: the pod token it presents, reviewed by the runtime as istiod asks the API server
(TokenReview), must name the pod its node id claims; otherwise no config and no certificate."""

from __future__ import annotations

from typing import Callable

from ..backends.local import rpc
from .cache import parse_node_id

Review = Callable[[str], "dict | None"]
UNREACHABLE = (OSError, ConnectionError, ValueError)


def bearer(metadata) -> str:
    """The token of an `authorization: Bearer TOKEN` entry of gRPC metadata, or ''."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and str(value).startswith("Bearer "):
            return str(value)[len("Bearer "):]
    return ""


def reviewer(address: str, call=rpc.request, timeout: float = 5.0) -> Review:
    """A TokenReview against the runtime at `address`: the pod a token belongs to, or None (also when unreachable)."""
    def review(token: str) -> dict | None:
        try:
            answer = call(address, "tokenreview", {"token": token}, timeout)
        except UNREACHABLE:
            return None
        return answer if isinstance(answer, dict) else None
    return review


def refusal(review: dict | None, node_id: str) -> str | None:
    """Why a stream with this review may not speak for node_id, else None."""
    pod, namespace = parse_node_id(node_id)
    if review is None:
        return "no valid pod token (authorization: Bearer)"
    if (review.get("namespace"), review.get("name")) != (namespace, pod):
        return f"its token belongs to pod {review.get('name')}.{review.get('namespace')}, not {pod}.{namespace}"
    return None
