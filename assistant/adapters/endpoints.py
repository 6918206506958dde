"""Where the local servers answer: their URLs, without importing any HTTP client."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def server_root(url: str) -> str:
    """``http://host:port/v1`` → ``http://host:port``: where a server's ``/health`` is."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
