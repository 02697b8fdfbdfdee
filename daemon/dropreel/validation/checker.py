"""Checking requests against their model's schema, from the model catalogue the budget shares
(one look-up per model); a schema that cannot be had lets the job go ahead unchecked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dropreel.providers.catalogue import ModelCatalogue
from dropreel.validation.problems import request_problems


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the check found: the problems, or why the request could not be checked."""

    problems: tuple[str, ...] = ()
    unchecked: str | None = None


class RequestChecker:
    """Checks each request against its model's schema, from the shared model catalogue."""

    def __init__(self, models: ModelCatalogue) -> None:
        self._models = models

    async def check(self, provider: str, body: Mapping[str, Any]) -> Verdict:
        model = body.get("model")
        if not isinstance(model, str):
            return Verdict(unchecked="the request names no model")
        looked = await self._models.look(provider, model)
        if looked.error is not None:
            why = f"the schema of {model} could not be fetched from {provider}: {looked.error}"
            return Verdict(unchecked=why)
        if looked.facts.schema is None:
            return Verdict(unchecked=f"{provider} publishes no request schema for {model}")
        return Verdict(tuple(request_problems(looked.facts.schema, body)))
