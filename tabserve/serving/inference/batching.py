"""Merging concurrent single-record calls in the entry worker before they cross to the model service.

BentoML's adaptive batching merges calls on the model service, but each call still crosses the
entry -> model hop on its own: one HTTP request, pickling, tracing and metrics per *record*, on both
sides. That per-record cost was larger than the model's (bench/README.md, "Findings"). So the entry
worker sends records that arrive while its calls are in flight together, as one list, to the same
batchable API: the hop is paid per batch, and BentoML still merges the lists of several entry workers.

No timer: a record that finds a free slot is sent at once (one user pays no batching wait); records
arriving while `max_in_flight` calls are out wait for the first to return, then go in one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Call = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


class InFlightBatcher:
    """`await submit(record)` -> that record's result from `call(records)`, in calls of at most `max_size`."""

    def __init__(self, call: Call, max_size: int, max_in_flight: int = 2) -> None:
        if max_size < 1 or max_in_flight < 1:
            raise ValueError("max_size and max_in_flight must be at least 1")
        self._call = call
        self.max_size = max_size
        self.max_in_flight = max_in_flight
        self._waiting: list[tuple[dict[str, Any], asyncio.Future]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    async def submit(self, record: dict[str, Any]) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((record, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._waiting and self._in_flight < self.max_in_flight:
            batch, self._waiting = self._waiting[: self.max_size], self._waiting[self.max_size :]
            # A caller that gave up (timeout, disconnect) cancelled its future: don't predict for it.
            batch = [(record, future) for record, future in batch if not future.done()]
            if not batch:
                continue
            self._in_flight += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[dict[str, Any], asyncio.Future]]) -> None:
        try:
            results = await self._call([record for record, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the model returned {len(results)} results for {len(batch)} records")
        except Exception as exc:  # every caller of the batch gets the failure (e.g. ModelUnavailable)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:  # cancelled (shutdown): so are its callers
            for _, future in batch:
                future.cancel()
            raise
        else:
            for (_, future), result in zip(batch, results, strict=True):  # lengths checked above
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._dispatch()
