"""The entry worker's in-flight batcher: what it merges, in which order, and how failures reach callers."""

import asyncio

import pytest

from tabserve.serving.inference.batching import InFlightBatcher


class RecordingModel:
    """A fake model call that records each batch and can be held open, to control what is in flight."""

    def __init__(self, fail: Exception | None = None):
        self.batches: list[list[dict]] = []
        self.gate = asyncio.Event()
        self.fail = fail

    async def __call__(self, records):
        self.batches.append(list(records))
        await self.gate.wait()
        if self.fail:
            raise self.fail
        return [{"echo": r["i"]} for r in records]


def test_a_lone_record_is_sent_at_once():
    async def scenario():
        model = RecordingModel()
        model.gate.set()
        batcher = InFlightBatcher(model, max_size=8)
        return await asyncio.wait_for(batcher.submit({"i": 1}), 1), model.batches

    assert asyncio.run(scenario()) == ({"echo": 1}, [[{"i": 1}]])


def test_records_arriving_while_calls_are_out_go_together_and_keep_their_answers():
    async def scenario():
        model = RecordingModel()
        batcher = InFlightBatcher(model, max_size=8, max_in_flight=1)
        first = asyncio.ensure_future(batcher.submit({"i": 0}))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(batcher.submit({"i": i})) for i in range(1, 6)]
        await asyncio.sleep(0)
        assert len(model.batches) == 1  # the others wait for the call in flight
        model.gate.set()
        answers = await asyncio.wait_for(asyncio.gather(first, *rest), 1)
        return answers, model.batches

    answers, batches = asyncio.run(scenario())
    assert answers == [{"echo": i} for i in range(6)]
    assert batches == [[{"i": 0}], [{"i": i} for i in range(1, 6)]]


def test_batches_are_cut_at_max_size():
    async def scenario():
        model = RecordingModel()
        batcher = InFlightBatcher(model, max_size=3, max_in_flight=1)
        calls = [asyncio.ensure_future(batcher.submit({"i": i})) for i in range(8)]
        await asyncio.sleep(0)
        model.gate.set()
        await asyncio.wait_for(asyncio.gather(*calls), 1)
        return [len(b) for b in model.batches]

    assert asyncio.run(scenario()) == [1, 3, 3, 1]  # the first goes alone: nothing was in flight


def test_a_failed_call_fails_every_caller_in_it_and_the_next_call_still_runs():
    async def scenario():
        model = RecordingModel(fail=RuntimeError("model down"))
        batcher = InFlightBatcher(model, max_size=8, max_in_flight=1)
        calls = [asyncio.ensure_future(batcher.submit({"i": i})) for i in range(3)]
        await asyncio.sleep(0)
        model.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1)
        model.fail = None
        after = await asyncio.wait_for(batcher.submit({"i": 9}), 1)
        return results, after

    results, after = asyncio.run(scenario())
    assert [str(r) for r in results] == ["model down"] * 3 and all(isinstance(r, RuntimeError) for r in results)
    assert after == {"echo": 9}


def test_a_caller_that_gave_up_is_not_predicted_for():
    async def scenario():
        model = RecordingModel()
        batcher = InFlightBatcher(model, max_size=8, max_in_flight=1)
        first = asyncio.ensure_future(batcher.submit({"i": 0}))
        await asyncio.sleep(0)
        abandoned = asyncio.ensure_future(batcher.submit({"i": 1}))
        kept = asyncio.ensure_future(batcher.submit({"i": 2}))
        await asyncio.sleep(0)
        abandoned.cancel()
        model.gate.set()
        return await asyncio.wait_for(asyncio.gather(first, kept), 1), model.batches

    answers, batches = asyncio.run(scenario())
    assert answers == [{"echo": 0}, {"echo": 2}] and batches == [[{"i": 0}], [{"i": 2}]]


def test_a_wrong_number_of_results_is_an_error_not_a_misattributed_answer():
    async def short_model(records):
        return [{"echo": 0}]

    async def scenario():
        batcher = InFlightBatcher(short_model, max_size=8, max_in_flight=1)
        calls = [asyncio.ensure_future(batcher.submit({"i": i})) for i in range(3)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[0] == {"echo": 0}  # the first call went alone and got its one result
    assert all(isinstance(r, RuntimeError) and "1 results for 2 records" in str(r) for r in results[1:])


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        InFlightBatcher(RecordingModel(), max_size=0)
