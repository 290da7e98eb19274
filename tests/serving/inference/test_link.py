"""ModelLink, the entry service's link to the model service, against a fake model service in-process:
a dropped call is made again (up to 3 calls in all), the model service's own 429/503 pass through
unretried, a call past the deadline is answered 503 at once, and the next call checks readiness first.
(On a real server: tests/served/test_error_contract.py, the model service's 429 reaching the client.)"""

import asyncio
import time
from http import HTTPStatus

import httpx
import pytest
from bentoml.exceptions import BentoMLException

from tabserve.core.errors import ModelUnavailable
from tabserve.serving.inference import link as model_link
from tabserve.serving.inference.link import ModelLink

RECORDS = [{"island": "Dream", "year": 2008}]
ANSWER = [{"prediction": "Adelie", "probabilities": {"Adelie": 1.0}}]


def dropped() -> Exception:
    """What BentoML's client (httpx) raises when the model service drops the connection."""
    return httpx.RemoteProtocolError("Server disconnected without sending a response.")


class FakeModelService:
    """Stands in for the handle `bentoml.depends` gives under `bentoml serve`: `to_async.<api>(records)`
    and `is_ready(timeout)`. Each call takes the next outcome: an exception to raise, "hang", or
    None to answer."""

    def __init__(self, *outcomes, ready: bool | Exception = True):
        self.outcomes = list(outcomes)
        self.calls: list[str] = []
        self.probes = 0
        self.ready = ready
        self.to_async = self

    def __getattr__(self, api: str):  # to_async.predict, to_async.predict_bulk
        async def call(records):
            self.calls.append(api)
            outcome = self.outcomes.pop(0) if self.outcomes else None
            if outcome == "hang":
                await asyncio.sleep(30)
            if isinstance(outcome, BaseException):
                raise outcome
            return ANSWER * len(records)

        return call

    async def is_ready(self, timeout):
        self.probes += 1
        if isinstance(self.ready, Exception):
            raise self.ready
        if self.ready == "hang":
            await asyncio.sleep(30)
        return self.ready


def call(link: ModelLink, api: str = "predict_bulk"):
    return asyncio.run(link.call(api, RECORDS))


def test_three_calls_in_all():
    assert model_link.ATTEMPTS == 3 and ModelLink(lambda: None, timeout_s=1).attempts == 3


def test_two_dropped_calls_then_an_answer():
    service = FakeModelService(dropped(), dropped())
    assert call(ModelLink(lambda: service, timeout_s=5)) == ANSWER
    assert service.calls == ["predict_bulk"] * 3


def test_three_dropped_calls_are_503():
    service = FakeModelService(dropped(), dropped(), dropped(), None)  # a 4th call would have answered
    with pytest.raises(ModelUnavailable) as refused:
        call(ModelLink(lambda: service, timeout_s=5))
    assert refused.value.status == 503 and str(refused.value) == "the model service is unavailable"
    assert service.calls == ["predict_bulk"] * 3


@pytest.mark.parametrize("status", [429, 503])
def test_the_model_services_refusal_passes_through_unretried(status):
    refusal = BentoMLException(f"Error making request: {status}: Too many requests", error_code=HTTPStatus(status))
    service = FakeModelService(refusal, None)
    with pytest.raises(ModelUnavailable) as refused:
        call(ModelLink(lambda: service, timeout_s=5), "predict")
    assert refused.value.status == status and str(refused.value) == "the model service is overloaded; retry shortly"
    assert service.calls == ["predict"]


def test_the_model_services_own_failure_is_503_unretried():
    service = FakeModelService(BentoMLException("boom", error_code=HTTPStatus(500)), None)
    with pytest.raises(ModelUnavailable) as refused:
        call(ModelLink(lambda: service, timeout_s=5))
    assert refused.value.status == 503 and str(refused.value) == "the model service failed to answer"
    assert service.calls == ["predict_bulk"]


def test_a_call_past_the_deadline_is_503_at_once_and_the_next_checks_readiness(monkeypatch):
    monkeypatch.setattr(model_link, "SUSPECT_FOR_S", 0.5)
    service = FakeModelService("hang", ready=False)
    link = ModelLink(lambda: service, timeout_s=0.2)
    start = time.monotonic()
    with pytest.raises(ModelUnavailable) as late:
        call(link)
    assert time.monotonic() - start < 2, "the deadline was not kept"
    assert late.value.status == 503 and str(late.value) == "the model service did not answer within 0.2 s"
    assert service.calls == ["predict_bulk"] and service.probes == 0  # not retried: it may still be working

    # Next call: the model service is probed first and, not ready, the call fails fast without being made.
    with pytest.raises(ModelUnavailable) as down:
        call(link)
    assert str(down.value) == "the model service is down; retry shortly" and down.value.status == 503
    assert service.calls == ["predict_bulk"] and service.probes == 1

    # Ready again: probed, then called.
    service.ready = True
    assert call(link) == ANSWER and service.probes == 2 and len(service.calls) == 2

    # Once SUSPECT_FOR_S has passed since the timeout, calls go straight through.
    time.sleep(0.6)
    assert call(link) == ANSWER and service.probes == 2 and len(service.calls) == 3


@pytest.mark.parametrize(
    "ready, up",
    [(True, True), (False, False), (dropped(), False), ("hang", False)],
    ids=["ready", "not-ready", "connection-error", "no-answer"],
)
def test_the_readiness_probe_never_raises(monkeypatch, ready, up):
    monkeypatch.setattr(model_link, "PROBE_TIMEOUT_S", 0.2)
    link = ModelLink(lambda: FakeModelService(ready=ready), timeout_s=5)
    assert asyncio.run(link.is_up()) is up


def test_an_in_process_service_is_called_directly():
    """Without a server, `bentoml.depends` gives the service object itself: no to_async, no retries."""

    class Local:
        def predict_bulk(self, records):
            return [{"n": len(records)}]

    link = ModelLink(lambda: Local(), timeout_s=5)
    assert call(link) == [{"n": 1}] and asyncio.run(link.is_up()) is True
