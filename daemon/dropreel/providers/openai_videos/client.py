"""The `/v1/videos` client: create, look up, list, cancel and fetch (openai-videos-api.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from dropreel.errors import GenerationUnknown, RequestRefused
from dropreel.providers.base import (
    Capabilities,
    ImageInput,
    ModelFacts,
    Recovery,
    RemoteGeneration,
    ResultStream,
)
from dropreel.providers.http import (
    ResultFetcher,
    json_answer,
    raise_for_answer,
    send,
)
from dropreel.providers.openai_videos.answers import page_of, parse_video, poll_after_s
from dropreel.providers.openai_videos.schema import documented_schema
from dropreel.providers.settle import settle_lost_post

PAGE_SIZE = 100
# Fields dropreel reads from a job but the API does not take: one request per video.
_NOT_SENT = frozenset({"num_generations"})


class OpenAIVideosClient:
    """Speaks an OpenAI-compatible `/v1/videos` API; implements the Provider seam.

    Poll-only: no push channel. With idempotency on, every create carries a key derived
    from the job and the video's index, so a create whose answer was lost is sent again
    and replayed by the provider, never made twice.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        name: str,
        base_url: str,
        api_key: SecretStr,
        idempotency: bool = True,
        idempotency_key_field: str = "idempotency_key",
    ) -> None:
        self.name = name
        self.capabilities = Capabilities(
            push_feed=False,
            idempotency_keys=idempotency,
            cancel=True,
            generations_per_request=1,
            reports_progress=True,
        )
        self._http = http
        self._base = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key.get_secret_value()}"}
        self._key_field = idempotency_key_field if idempotency else ""
        self._results = ResultFetcher(http, origin_url=self._base, auth=self._auth)
        # The provider's own word on how often to look (openai-poll-after-ms), if it gave one.
        self.poll_after_s: float | None = None

    def _video(self, payload: object, what: str) -> RemoteGeneration:
        return parse_video(payload, what, content_url=f"{self._base}/videos/{{id}}/content")

    def _note_poll_hint(self, response: httpx.Response) -> None:
        hint = poll_after_s(response.headers.get("openai-poll-after-ms"))
        if hint is not None:
            self.poll_after_s = hint

    async def enqueue(
        self, body: Mapping[str, Any], *, idempotency_key: str, image: ImageInput | None = None
    ) -> list[RemoteGeneration]:
        """One create per video asked for (`num_generations`, default 1).

        A refusal after the first video was made returns the videos made: they are paid
        for and must be delivered. Any other failure raises, and a resend with the same key
        replays what was made.
        """
        count = int(body.get("num_generations", 1))
        request = {k: v for k, v in body.items() if k not in _NOT_SENT}
        made: list[RemoteGeneration] = []
        for index in range(1, count + 1):
            key = f"{idempotency_key}-{index}" if count > 1 else idempotency_key
            try:
                made.append(await self._create(request, key, image))
            except RequestRefused:
                if not made:
                    raise
                return made
        return made

    async def _create(
        self, request: Mapping[str, Any], key: str, image: ImageInput | None
    ) -> RemoteGeneration:
        what = f"POST /videos (model {request.get('model')!r})"
        payload = dict(request)
        headers = dict(self._auth)
        if self.capabilities.idempotency_keys:
            headers["Idempotency-Key"] = key
            if self._key_field:
                payload[self._key_field] = key
        url = f"{self._base}/videos"
        if image is None:
            response = await send(self._http, "POST", url, json=payload, headers=headers)
        else:
            # A file goes as multipart/form-data, `input_reference` (both services).
            response = await send(
                self._http,
                "POST",
                url,
                data={k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()},
                files={"input_reference": (image.name, image.data, image.media_type)},
                headers=headers,
            )
        raise_for_answer(response, what)
        return self._video(json_answer(response, what), what)

    async def get(self, generation_id: str) -> RemoteGeneration:
        what = f"GET /videos/{generation_id}"
        path = quote(generation_id, safe="")
        response = await send(self._http, "GET", f"{self._base}/videos/{path}", headers=self._auth)
        if response.status_code == 404:
            raise GenerationUnknown(what, 404, "the provider does not know this video")
        raise_for_answer(response, what)
        self._note_poll_hint(response)
        return self._video(json_answer(response, what), what)

    async def listed(self, ids: Collection[str]) -> dict[str, RemoteGeneration] | None:
        """Newest first, a page at a time, until every id is seen: about one request per
        page of pending videos. Pages are capped so a busy account with many newer videos
        costs a bounded number; what was not seen is looked up one by one."""
        wanted = set(ids)
        found: dict[str, RemoteGeneration] = {}
        pages = 2 + math.ceil(len(wanted) / PAGE_SIZE)
        after: str | None = None
        for _ in range(pages):
            params: dict[str, str | int] = {"limit": PAGE_SIZE, "order": "desc"}
            if after is not None:
                params["after"] = after
            response = await send(
                self._http, "GET", f"{self._base}/videos", params=params, headers=self._auth
            )
            if response.status_code in (404, 405, 501):
                return None
            raise_for_answer(response, "GET /videos")
            self._note_poll_hint(response)
            rows, more, after = page_of(json_answer(response, "GET /videos"), "GET /videos")
            for row in rows:
                video_id = row.get("id") if isinstance(row, Mapping) else None
                if video_id in wanted and video_id not in found:
                    found[video_id] = self._video(row, "GET /videos")
            if len(found) == len(wanted) or not more:
                break
        return found

    async def cancel(self, generation_id: str) -> None:
        """Best effort: Lumenfall cancels in-flight jobs; OpenAI's DELETE removes a finished
        video instead, and neither promises a refund."""
        what = f"DELETE /videos/{generation_id}"
        path = quote(generation_id, safe="")
        response = await send(
            self._http, "DELETE", f"{self._base}/videos/{path}", headers=self._auth
        )
        if response.status_code not in (404, 405):
            raise_for_answer(response, what)

    async def recover_lost_post(
        self,
        request: Mapping[str, Any],
        posted_at: float,
        *,
        window_s: float,
        taken: Collection[str],
    ) -> Recovery:
        """Without idempotency keys: the newest page of the listing, matched like Oxen's."""
        response = await send(
            self._http,
            "GET",
            f"{self._base}/videos",
            params={"limit": PAGE_SIZE, "order": "desc"},
            headers=self._auth,
        )
        raise_for_answer(response, "GET /videos")
        rows, _, _ = page_of(json_answer(response, "GET /videos"), "GET /videos")
        candidates = [self._video(row, "GET /videos") for row in rows]
        return settle_lost_post(
            request, posted_at, window_s=window_s, candidates=candidates, taken=taken
        )

    async def model_facts(self, model: str) -> ModelFacts:
        """No model object is served: the documented fields and enums (openai-videos-api.md),
        and no price."""
        return ModelFacts(schema=documented_schema(model))

    def open_download(
        self, url: str, *, offset: int = 0
    ) -> AbstractAsyncContextManager[ResultStream]:
        return self._results.open_download(url, offset=offset)
