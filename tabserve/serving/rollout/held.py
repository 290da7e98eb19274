"""The model versions this server holds, loaded once at start from the store: the champion (MODEL_TAG), a
challenger (CHALLENGER_TAG) and the extra versions (EXTRA_MODEL_TAGS). A problem stops the server at start
with one line naming the tag and the fix, not a traceback at the first request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tabserve.core import config, store
from tabserve.core.card import ModelCard
from tabserve.core.errors import TabserveError
from tabserve.serving import settings
from tabserve.serving.rollout.versions import is_watchable


@dataclass(frozen=True)
class HeldModels:
    card: ModelCard  # the champion at start: the API's types are made from its feature schema
    model: Any  # its bentoml.models.BentoModel, declared on a service class so `bentoml build` packs it
    challenger_card: ModelCard | None = None
    challenger: Any = None
    extras: list[tuple[Any, ModelCard]] = field(default_factory=list)

    @property
    def models(self) -> list[Any]:
        """Every held version's BentoModel (the champion first), for the service class that packs them."""
        return [m for m in (self.model, self.challenger, *(m for m, _ in self.extras)) if m is not None]

    @property
    def preload(self) -> list[str]:
        """Loaded at start; other versions on first use."""
        return [card.tag for card in (self.card, self.challenger_card) if card is not None]

    @property
    def labels(self) -> dict[str, str]:
        """The roles, recorded in a built Bento's bento.yaml: it serves its versions in them with no setting."""
        labels = {"model": self.card.tag, "task": self.card.task}
        if self.challenger_card:
            labels["challenger"] = self.challenger_card.tag
        if self.extras:
            labels["extra_models"] = ",".join(card.tag for _, card in self.extras)
        return labels


def held_models() -> HeldModels:
    """The versions the settings name, or SystemExit with one line."""
    try:
        model, card = store.served_model(config.MODEL_TAG)
        challenger, challenger_card = (
            store.served_model(config.CHALLENGER_TAG) if config.CHALLENGER_TAG else (None, None)
        )
        extras = [store.served_model(tag) for tag in config.EXTRA_MODEL_TAGS]
    except TabserveError as exc:
        raise SystemExit(f"error: {exc}") from None
    if challenger_card is not None and (problem := card.incompatibility(challenger_card)):
        raise SystemExit(
            f"error: CHALLENGER_TAG={challenger_card.tag} cannot be scored on the champion's records: {problem};"
            " train it on the same columns"
        )
    if settings.MODEL_WATCH_S and not is_watchable(config.MODEL_TAG):
        raise SystemExit(
            "error: MODEL_WATCH_S needs MODEL_TAG to name a model that can move (name or name:latest), not the fixed"
            f" version {config.MODEL_TAG!r}"
        )
    return HeldModels(card, model, challenger_card, challenger, extras)
