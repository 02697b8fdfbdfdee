"""Sending one webhook over HTTP: the only place hooks touch the network."""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from dropreel.hooks.run import HookResult
from dropreel.hooks.webhook import message_id, webhook_body, webhook_headers

_ANSWER_TAIL_CHARS = 300


def shown(url: str) -> str:
    """The URL without its query or credentials: either may hold a token."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class WebhookSender:
    """POSTs a generation's facts to hooks.on_complete_url, signed; redirects are not
    followed (a 3xx is a failure, as the spec's receivers answer 2xx)."""

    def __init__(self, url: str, key: bytes, *, timeout_s: float) -> None:
        self.url = url
        self._key = key
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def send(self, generation_id: str, fields: Mapping[str, str]) -> HookResult:
        """One attempt: ok on a 2xx; the detail says how it ended and after how long."""
        body = webhook_body(fields)
        msg_id = message_id(generation_id)
        headers = webhook_headers(self._key, msg_id, int(time.time()), body)
        started = time.monotonic()
        try:
            response = await self._http.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return HookResult(
                False, f"webhook to {shown(self.url)} timed out after {self._timeout_s:g}s"
            )
        except httpx.HTTPError as exc:
            return HookResult(
                False, f"webhook to {shown(self.url)} failed: {exc or type(exc).__name__}"
            )
        took = f"after {time.monotonic() - started:.2f}s"
        if response.is_success:
            return HookResult(True, f"webhook: HTTP {response.status_code} {took}")
        answer = response.text.strip()[:_ANSWER_TAIL_CHARS]
        return HookResult(
            False,
            f"webhook: HTTP {response.status_code} {took}" + (f": {answer}" if answer else ""),
        )

    async def aclose(self) -> None:
        await self._http.aclose()
