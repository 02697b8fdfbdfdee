"""Validate before paying: schemas fetched once per model, and a daemon that refuses a request
its model would not take before any POST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from dropreel.config import BudgetSettings
from dropreel.errors import NotSent
from dropreel.lifecycle import JobState
from dropreel.providers.base import ModelFacts, Pricing
from dropreel.providers.catalogue import ModelCatalogue
from dropreel.providers.oxen.model import model_facts
from dropreel.spend.gate import Budget
from dropreel.validation.checker import RequestChecker
from dropreel.validation.schema import FieldRule, RequestSchema
from dropreel_simulator.models import SORA_2_PRO
from dropreel_simulator.oxen import Simulator
from tests.daemon_harness import (
    db_rows,
    drop_job,
    run_daemon,
    settings_for,
    sidecar,
    write_config,
)
from tests.test_e2e import daemon_env, dropreel

SCHEMA = RequestSchema("m", {"prompt": FieldRule(frozenset({"string"})), "model": FieldRule()})


class Catalogue:
    """A provider's schema source that answers from a dict, or fails while `down`."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.down = False

    async def model_facts(self, model: str) -> ModelFacts:
        self.asked.append(model)
        if self.down:
            raise NotSent("GET /models/m", "connection refused")
        if model != "m":
            return ModelFacts()
        return ModelFacts(SCHEMA, Pricing(0.25))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_schema_is_fetched_once_per_model_until_its_time_to_live_runs_out() -> None:
    source, clock = Catalogue(), Clock()
    checker = RequestChecker(ModelCatalogue({"oxen": source}, ttl_s=100, clock=clock))
    for _ in range(3):
        assert (await checker.check("oxen", {"model": "m", "prompt": "p"})).problems == ()
    assert (await checker.check("oxen", {"model": "m", "promt": "p"})).problems != ()
    assert source.asked == ["m"]
    clock.now = 101
    await checker.check("oxen", {"model": "m", "prompt": "p"})
    assert source.asked == ["m", "m"]


async def test_an_unfetchable_schema_lets_the_job_go_unchecked_and_is_asked_again_soon() -> None:
    source, clock = Catalogue(), Clock()
    source.down = True
    checker = RequestChecker(ModelCatalogue({"oxen": source}, ttl_s=3600, retry_s=60, clock=clock))
    verdict = await checker.check("oxen", {"model": "m", "promt": "p"})
    assert verdict.problems == ()
    assert verdict.unchecked is not None and "could not be fetched" in verdict.unchecked
    source.down = False
    clock.now = 30
    assert (await checker.check("oxen", {"model": "m", "promt": "p"})).problems == ()
    clock.now = 61
    assert (await checker.check("oxen", {"model": "m", "promt": "p"})).problems != ()
    assert source.asked == ["m", "m"]


async def test_a_model_without_a_schema_is_not_checked() -> None:
    checker = RequestChecker(ModelCatalogue({"oxen": Catalogue()}, ttl_s=100))
    verdict = await checker.check("oxen", {"model": "other", "anything": 1})
    assert verdict == verdict.__class__(unchecked="oxen publishes no request schema for other")


async def test_a_typo_and_a_value_outside_an_enum_are_refused_before_any_post(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    inbox = tmp_path / "inbox"
    drop_job(inbox, "typo.json", json.dumps({"prompt": "p", "num_generation": 2}))
    drop_job(inbox, "enum.json", json.dumps({"prompt": "p", "seconds": "5"}))
    drop_job(inbox, "number.json", json.dumps({"prompt": "p", "seconds": 8}))
    drop_job(inbox, "good.json", json.dumps({"prompt": "p", "seconds": "8"}))

    await run_daemon(settings)

    assert simulator.count("enqueue") == 1
    assert [body["prompt"] for body, _ in simulator.enqueued] == ["p"]
    assert simulator.enqueued[0][0]["seconds"] == "8"
    assert simulator.count("model") == 1, "one fetch of the model's schema for four jobs"
    assert "did you mean `num_generations`?" in sidecar(tmp_path, "typo.json")
    assert sidecar(tmp_path, "enum.json") == (
        'openai-sora-2-pro at oxen would not take it: seconds is "5", not an allowed value'
        ' (allowed: "4", "8", "12")'
    )
    assert 'did you mean "8"?' in sidecar(tmp_path, "number.json")
    states = db_rows(settings.database_path, "SELECT state FROM jobs ORDER BY state")
    assert [r["state"] for r in states] == [JobState.COMPLETED] + [JobState.FAILED] * 3


async def test_without_a_schema_the_job_goes_ahead_and_the_log_says_it_was_not_checked(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.fail_next["model"] = [(503, {})]
    settings = settings_for(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "typo.json", json.dumps({"prompt": "p", "num_generation": 2}))
    with capture_logs() as logs:
        await run_daemon(settings)
    assert simulator.count("enqueue") == 1
    unchecked = [e for e in logs if "not_validated" in e]
    assert len(unchecked) == 1 and "could not be fetched" in unchecked[0]["not_validated"]


async def test_checking_can_be_turned_off(tmp_path: Path, simulator: Simulator) -> None:
    settings = settings_for(tmp_path, simulator, jobs={"check_schema": False})
    drop_job(tmp_path / "inbox", "typo.json", json.dumps({"prompt": "p", "num_generation": 2}))
    await run_daemon(settings)
    assert simulator.count("enqueue") == 1
    assert simulator.count("model") == 1, "the model is still looked up once, for its price"


def job_file(folder: Path, name: str, body: dict[str, object]) -> Path:
    (folder / name).write_text(json.dumps(body))
    return folder / name


@pytest.mark.e2e
def test_check_judges_files_by_hand_without_the_daemon(
    tmp_path: Path, simulator: Simulator
) -> None:
    config = write_config(tmp_path, simulator)
    good = job_file(tmp_path, "good.json", {"prompt": "p", "seconds": "8"})
    typo = job_file(tmp_path, "typo.json", {"prompt": "p", "num_generation": 2, "seconds": "5"})
    broken = tmp_path / "broken.json"
    broken.write_text("{")

    both = dropreel("check", "--config", str(config), str(good), str(typo), str(broken))
    assert both.returncode == 1, both.stderr
    lines = both.stdout.splitlines()
    assert lines[0] == f"{good}: ok"
    assert lines[1].startswith(f"{typo}: num_generation is not a field openai-sora-2-pro")
    assert "did you mean `num_generations`?" in lines[1]
    assert lines[2] == f'{typo}: seconds is "5", not an allowed value (allowed: "4", "8", "12")'
    assert lines[3].startswith(f"{broken}: not valid JSON")
    assert len(lines) == 4
    assert simulator.count("enqueue") == 0 and simulator.count("model") == 1

    assert dropreel("check", "--config", str(config), str(good)).returncode == 0


@pytest.mark.e2e
def test_check_without_a_key_says_the_file_was_not_checked(
    tmp_path: Path, simulator: Simulator
) -> None:
    config = write_config(tmp_path, simulator)
    typo = job_file(tmp_path, "typo.json", {"prompt": "p", "num_generation": 2})
    env = {k: v for k, v in daemon_env().items() if k != "OXEN_API_KEY"}
    checked = dropreel("check", "--config", str(config), str(typo), env=env)
    assert checked.returncode == 0
    assert checked.stdout.startswith(f"{typo}: ok, but not checked: the schema of")
    assert "OXEN_API_KEY is not set" in checked.stdout


async def test_the_check_and_the_budget_share_one_look_up_per_model() -> None:
    source = Catalogue()
    models = ModelCatalogue({"oxen": source}, ttl_s=100)
    checker = RequestChecker(models)
    budget = Budget(BudgetSettings(), models)
    assert (await checker.check("oxen", {"model": "m", "prompt": "p"})).problems == ()
    assert await budget.estimate("oxen", {"model": "m", "seconds": "4"}) == 1.0
    assert source.asked == ["m"], "one look-up gives the schema and the price"


def test_the_simulators_model_object_gives_both_schema_and_price() -> None:
    facts = model_facts("openai-sora-2-pro", SORA_2_PRO, "GET /api/ai/models/openai-sora-2-pro")
    assert facts.pricing == Pricing(0.3, 0.5)
    assert facts.schema is not None and {"prompt", "seconds", "model"} <= set(facts.schema.fields)
