"""Artifact URLs that carry credentials: how to tell, what may be shown, what to hide.

A mirror URL may hold a user and password (`https://user:token@host/...`) or a signature in
its query or fragment (`?X-Amz-Signature=...`, `sig=`, `token=`, an Azure SAS). Query
parameter names differ between services, so any user info, query or fragment makes the URL a
secret. Messages and progress lines show `public_url()` (`scheme://host/path`), the resource
keeps the URL as a Pulumi secret, and the host passes it to curl on stdin, never as an
argument.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit


def _is_url(url: str) -> bool:
    """A `scheme://host...` URL (any scheme, so that messages about a wrong one mask it
    too); a local path is none."""
    parts = urlsplit(url)
    return bool(parts.scheme and url[len(parts.scheme) :].startswith("://"))


def has_credentials(url: str) -> bool:
    """True for a URL with user info, a query or a fragment."""
    parts = urlsplit(url)
    return _is_url(url) and bool(
        "@" in parts.netloc or parts.query or parts.fragment or url.endswith(("?", "#"))
    )


def public_url(url: str) -> str:
    """`scheme://host[:port]/path` of a URL; anything else (a local path) as is."""
    if not _is_url(url):
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def secret_parts(url: str) -> tuple[str, ...]:
    """The strings to mask wherever output may echo the URL: the URL itself, its user info,
    password, query, fragment and each query value. Empty for a URL without credentials."""
    if not has_credentials(url):
        return ()
    parts = urlsplit(url)
    pieces = [url]
    userinfo = parts.netloc.rpartition("@")[0]
    pieces += [userinfo, parts.password or ""]
    pieces += [parts.query, parts.fragment]
    pieces += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    return tuple(piece for piece in pieces if piece)
