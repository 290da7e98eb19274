"""The model versions a server holds, their roles, and the switch of champion without a restart.

- Held: the champion (MODEL_TAG), the challenger (CHALLENGER_TAG), other versions (EXTRA_MODEL_TAGS), and
  every version that has been champion since the server started (so a promotion can roll back).
- The API's request and answer types are built at start from the first champion's card. Another version
  answers behind them only if its card is compatible (ModelCard.incompatibility: same columns, kinds and
  classes; categories may be added, not removed); an incompatible one is listed, its card readable, but
  predicting with it is refused (409) and it is never swapped in.
- The entry workers choose the version of each request when it starts (`champion`, or the challenger for a
  canary share) and send its tag with the records: the model service predicts with exactly that version
  (it keeps every version it has loaded), so a request in flight during a swap finishes on the version it
  started with, no answer mixes versions, and cache keys carry the tag that answered.
- The workers of one server share the roles through a JSON file in the server's run directory (BentoML's
  Prometheus multiprocess directory, fresh at every start): a promotion (POST /v1/admin/promote) or the
  watcher writes it, and every entry worker reads it every FOLLOW_S seconds (one stat() when nothing
  changed), so all of them switch within about a second.
- The watcher (MODEL_WATCH_S > 0, MODEL_TAG naming "name" or "name:latest"): every MODEL_WATCH_S seconds it
  resolves the tag in the store; a version never seen before is checked for compatibility, warmed on the
  schema's example rows through the model service (which loads it and verifies its checksum) and written
  as champion. A version once seen (served, refused or rolled back from) is not taken again: a rollback
  stays until the next new version.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tabserve.core.card import ModelCard
from tabserve.serving.observe import metrics

logger = logging.getLogger("tabserve")
FOLLOW_S = 1.0  # how often every worker reads the shared roles file
CLAIM_S = 120.0  # a new version's check and warm-up, by one worker, may take this long
STATE_FILE = "tabserve-model-roles.json"
CHAMPION, CHALLENGER, AVAILABLE, PREVIOUS = "champion", "challenger", "available", "previous"


class UnknownVersion(LookupError):
    """A version this server does not hold: the message lists those it does."""


class IncompatibleVersion(ValueError):
    """A held version that cannot answer behind the API's types."""


def state_path() -> Path:
    """The roles file of this server: in BentoML's multiprocess directory under `bentoml serve` (one per
    server start, shared by its workers), else in a directory of this process."""
    base = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not base or not os.path.isdir(base):
        base = tempfile.mkdtemp(prefix="tabserve-roles-")
    return Path(base) / STATE_FILE


class ModelVersions:
    """One entry worker's view of the held versions and their roles."""

    def __init__(
        self,
        champion: ModelCard,
        challenger: ModelCard | None = None,
        extras: list[ModelCard] = (),
        *,
        watch: str = "",
        watch_s: float = 0,
        canary_percent: float = 0,
        path: Path | None = None,
        load_card: Callable[[str], ModelCard] | None = None,
    ) -> None:
        self.api_card = champion  # the card the API types were built from
        self.champion = champion
        self.previous: ModelCard | None = None  # the champion before this one
        self.challenger = challenger
        self.held: dict[str, ModelCard] = {}
        for card in (champion, challenger, *extras):
            if card is not None:
                self.held.setdefault(card.tag, card)
        self.watch = watch  # the tag the watcher resolves ("name:latest"); "" when off
        self.watch_s = watch_s
        self.canary_percent = canary_percent
        self.path = path or state_path()
        self._load_card = load_card
        self._seen_mtime = 0.0
        self._checked_at = 0.0
        self.on_swap: list[Callable[[ModelCard], None]] = []  # called with the new champion, in the event loop
        metrics.observe_champion(None, champion.tag)

    # --- lookups (the request path) ----------------------------------------------------------------

    def find(self, version: str) -> ModelCard:
        """A held version by its tag ("name:version"), its version alone, or a role: "champion", "challenger",
        "previous" (the champion before the current one, while this server runs: a rollback's target)."""
        by_role = {CHAMPION: self.champion, CHALLENGER: self.challenger, PREVIOUS: self.previous}
        if version in by_role:
            if by_role[version] is None:
                raise UnknownVersion(f"this server has no {version} version; it holds: {', '.join(self.held)}")
            return by_role[version]
        for tag, card in self.held.items():
            if version in (tag, tag.split(":", 1)[-1]):
                return card
        raise UnknownVersion(f"unknown model version {version!r}; this server holds: {', '.join(self.held)}")

    def answering(self, version: str) -> ModelCard:
        """A held version that can answer behind the API's types; UnknownVersion or IncompatibleVersion."""
        card = self.find(version)
        problem = self.api_card.incompatibility(card)
        if problem is not None:
            raise IncompatibleVersion(
                f"model version {card.tag} cannot answer behind this server's API: {problem}; "
                f"serve it on its own (MODEL_TAG={card.tag}) to predict with it"
            )
        return card

    def role(self, tag: str) -> str:
        if tag == self.champion.tag:
            return CHAMPION
        if self.challenger is not None and tag == self.challenger.tag:
            return CHALLENGER
        return AVAILABLE

    def for_record(self, values: dict[str, Any]) -> ModelCard:
        """The version that answers an unversioned request: the champion, or for CANARY_PERCENT of the
        records (a stable hash: the same record always goes the same way) the challenger."""
        if self.canary_percent and self.challenger is not None and canary_share(values) < self.canary_percent:
            return self.challenger
        return self.champion

    def listing(self) -> list[dict[str, Any]]:
        """GET /v1/models: every held version, the champion first."""
        order = sorted(
            self.held.values(),
            key=lambda c: (self.role(c.tag) != CHAMPION, self.role(c.tag) != CHALLENGER, c.creation_time),
        )
        listed = []
        for card in order:
            why = self.api_card.incompatibility(card)
            listed.append(
                {
                    "tag": card.tag,
                    "created": card.creation_time,
                    "task": card.task,
                    "metrics": card.metrics,
                    "role": self.role(card.tag),
                    "compatible": why is None,
                    **({"incompatible_because": why} if why else {}),
                }
            )
        return listed

    # --- changing roles ------------------------------------------------------------------------------

    def promote(self, version: str) -> ModelCard:
        """Make a held, compatible version the champion in every worker (through the roles file)."""
        card = self.answering(version)
        state = self._read() or self._state()
        state["champion"] = card.tag
        state["seen"] = sorted(set(state.get("seen", [])) | {card.tag})
        self._write(state)
        self._apply(state)
        return card

    async def follow(self, warm: Callable[[ModelCard], Awaitable[None]]) -> None:
        """The background task of each entry worker: follow the roles file, and watch the store."""
        while True:
            await asyncio.sleep(FOLLOW_S)
            try:
                state = await asyncio.to_thread(self._read_if_changed)
                if state is not None:
                    await asyncio.to_thread(self._hold_all, state)
                    self._apply(state)
                if self.watch and self.watch_s and time.monotonic() - self._checked_at >= self.watch_s:
                    self._checked_at = time.monotonic()
                    await self._check_store(warm)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving the current champion; say why once per failure
                logger.warning("model versions: %s: %s", type(exc).__name__, exc)

    async def _check_store(self, warm: Callable[[ModelCard], Awaitable[None]]) -> None:
        tag = await asyncio.to_thread(resolve, self.watch)
        state = self._read() or self._state()
        if tag is None or tag in state.get("seen", []) or tag in state.get("refused", {}) or tag in self.held:
            return
        if not self._claim(tag):
            return  # another worker is taking it; the roles file will say how that went
        card = await asyncio.to_thread(self._card, tag)
        problem = self.api_card.incompatibility(card)
        if problem is None:
            try:
                await warm(card)  # the model service loads it, verifies its checksum and predicts the examples
            except Exception as exc:  # noqa: BLE001
                problem = f"it failed to load or predict: {exc}"
        if problem is not None:
            state.setdefault("refused", {})[tag] = problem
            self._write(state)
            metrics.observe_swap("refused")
            logger.error(
                "new model version %s is not swapped in: %s; still serving %s. To serve it, restart with MODEL_TAG=%s",
                tag,
                problem,
                self.champion.tag,
                tag,
            )
            return
        self.held[tag] = card
        state["champion"] = tag
        state["seen"] = sorted(set(state.get("seen", [])) | {tag})
        self._write(state)
        self._apply(state)
        metrics.observe_swap("swapped")
        logger.warning("model version %s is now the champion (it was %s)", tag, state.get("previous"))

    def _claim(self, tag: str) -> bool:
        """One worker checks and warms a new version: the first to create its claim file (a claim older than
        CLAIM_S, left by a worker that died, can be taken again)."""
        path = self.path.with_name(f".claim-{tag.replace(':', '-')}")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime > CLAIM_S:
                    path.unlink(missing_ok=True)
            except OSError:
                pass
            return False

    # --- the roles file --------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "champion": self.champion.tag,
            "challenger": self.challenger.tag if self.challenger else None,
            "seen": sorted(self.held),
            "refused": {},
        }

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _read_if_changed(self) -> dict[str, Any] | None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return None
        if mtime == self._seen_mtime:
            return None
        self._seen_mtime = mtime
        return self._read()

    def _write(self, state: dict[str, Any]) -> None:
        """Atomically (write, then rename), so a reader never sees half a file."""
        state["previous"] = self.champion.tag
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path)

    def _hold_all(self, state: dict[str, Any]) -> None:
        for tag in [state.get("champion"), *state.get("seen", [])]:
            if tag and tag not in self.held and tag not in state.get("refused", {}):
                self.held[tag] = self._card(tag)

    def _apply(self, state: dict[str, Any]) -> None:
        new = self.held.get(state.get("champion") or "")
        if new is not None and new.tag != self.champion.tag:
            self.previous, self.champion = self.champion, new  # a request reads the champion once, when it starts
            metrics.observe_champion(self.previous.tag, new.tag)
            for callback in self.on_swap:
                callback(new)

    def _card(self, tag: str) -> ModelCard:
        if self._load_card is not None:
            return self._load_card(tag)
        import bentoml

        return ModelCard.from_model(bentoml.models.get(tag))


def resolve(tag: str) -> str | None:
    """The full tag ("name:version") a tag names in the store now; None when the store has none."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return str(bentoml.models.get(tag).tag)
    except NotFound:
        return None


def canary_share(values: dict[str, Any]) -> float:
    """A record's place in [0, 100): a stable hash of its values, the same in every worker and replica."""
    digest = hashlib.blake2b(json.dumps(values, sort_keys=True, default=str).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


def is_watchable(tag: str) -> bool:
    """Whether a MODEL_TAG can move: "name" or "name:latest", not a fixed version."""
    return ":" not in tag or tag.endswith(":latest")
