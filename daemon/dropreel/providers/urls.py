"""Whether a result URL a provider sent can be fetched at all. Pure.

Whatever arrives (a trailing newline, a port out of range, 64 KB of text, another scheme)
must be judged here, at the seam: httpx refuses such URLs with an error outside its HTTPError
tree, which would otherwise escape every handler downstream.
"""

from __future__ import annotations

import httpx

MAX_URL_CHARS = 8192


def usable_result_url(value: object) -> str | None:
    """The URL if it can be downloaded (http or https, a host, a valid port), else None."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL_CHARS:
        return None
    try:
        url = httpx.URL(value)
        port = url.port
    except (httpx.InvalidURL, ValueError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    if port is not None and not 0 < port < 65536:
        return None
    return value
