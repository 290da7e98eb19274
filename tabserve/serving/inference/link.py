"""The entry service's link to the model service: a call with a deadline, retries where they are
safe, and a quick readiness probe. Every failure becomes ModelUnavailable (answered 503, or 429
when the model service refused the load), never a hang or a 500.

- Under a burst of new connections the link sometimes drops a call (ServerDisconnected, upstream
  BentoML issues #3669/#4238). Inference is idempotent, so a dropped call is made again: up to
  ATTEMPTS calls in all, then 503.
- A call the model service does not answer within `timeout_s` is answered 503 at once (a dead model
  worker leaves its socket listening, so calls would otherwise hang), and for the next
  SUSPECT_FOR_S seconds each call first checks the model service is up, failing fast if not.
- Used without a server (unit tests), `bentoml.depends` gives the service object itself: it is called
  directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from bentoml.exceptions import BentoMLException

from tabserve.core.errors import ModelUnavailable
from tabserve.serving.observe import metrics

logger = logging.getLogger("tabserve")

ATTEMPTS = 3  # calls in all for one request: the first and up to two retries
SUSPECT_FOR_S = 5.0
PROBE_TIMEOUT_S = 2.0


class ModelLink:
    def __init__(self, service: Callable[[], Any], timeout_s: float, attempts: int = ATTEMPTS) -> None:
        self._service = service  # called each time: BentoML resolves the dependency lazily
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._suspect_until = 0.0

    async def call(self, api: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`api` of the model service on `records`: one result per record, in order. Timed on /metrics
        (tabserve_model_call_seconds{api}), beside the feature lookups of predict-by-id."""
        started = time.perf_counter()
        try:
            return await self._call(api, records)
        finally:
            metrics.observe_model_call(api, time.perf_counter() - started)

    async def _call(self, api: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        service = self._service()
        if not hasattr(service, "to_async"):  # in-process instance (no server)
            return getattr(service, api)(records)
        if time.monotonic() < self._suspect_until and not await self.is_up():
            raise ModelUnavailable("the model service is down; retry shortly")  # fail fast, don't queue
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(0.05 * attempt)
            try:
                return await asyncio.wait_for(getattr(service.to_async, api)(records), self.timeout_s)
            except TimeoutError:
                self._suspect_until = time.monotonic() + SUSPECT_FOR_S
                raise ModelUnavailable(f"the model service did not answer within {self.timeout_s:g} s") from None
            except BentoMLException as exc:  # the model service answered, with an error: not retried
                status = int(getattr(exc, "error_code", 500))
                if status in (429, 503):
                    raise ModelUnavailable("the model service is overloaded; retry shortly", status) from None
                logger.error("model service failed: %s", exc)
                raise ModelUnavailable("the model service failed to answer") from None
            except Exception as exc:  # connection-level: the idempotent call is made again
                logger.info("model service call failed (attempt %d of %d): %r", attempt, self.attempts, exc)
        logger.warning("model service call failed %d times; answering 503", self.attempts)
        raise ModelUnavailable("the model service is unavailable")

    async def is_up(self) -> bool:
        """A quick readiness probe of the model service that never raises."""
        service = self._service()
        if not hasattr(service, "to_async"):
            return True
        try:
            return bool(await asyncio.wait_for(service.is_ready(1), PROBE_TIMEOUT_S))
        except Exception:  # timeouts and connection errors of aiohttp/httpx alike mean "not up"
            return False
