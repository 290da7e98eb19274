"""Model versions in-process: which versions can answer behind the API types, the canary's stable split,
the roles file every worker follows, and the store watcher (swap, refusal, one worker per new version)."""

from __future__ import annotations

import asyncio
import dataclasses

import pandas as pd
import pytest

from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV
from tabserve.serving.rollout import versions as versions_module
from tabserve.serving.rollout.versions import IncompatibleVersion, ModelVersions, UnknownVersion, canary_share
from tabserve.training import trainer
from tests.conftest import HGB_ONLY, PENGUIN


@pytest.fixture(scope="module")
def card(penguins_model):
    return ModelCard.from_model(penguins_model)


def with_feature(card: ModelCard, name: str, **changes) -> ModelCard:
    features = [dataclasses.replace(f, **changes) if f.name == name else f for f in card.schema.features]
    return dataclasses.replace(card, schema=dataclasses.replace(card.schema, features=features), tag="penguins:other")


def test_what_can_answer_behind_the_api_types(card):
    assert card.incompatibility(card) is None
    assert (
        card.incompatibility(with_feature(card, "island", categories=["Biscoe", "Dream", "Torgersen", "Anvers"]))
        is None
    )  # gained one
    assert "lost categories the API accepts: Torgersen" in card.incompatibility(
        with_feature(card, "island", categories=["Biscoe", "Dream"])
    )
    assert "changed from number to category" in card.incompatibility(
        with_feature(card, "year", kind="categorical", categories=[2007, 2008, 2009])
    )
    fewer = dataclasses.replace(card, schema=dataclasses.replace(card.schema, features=card.schema.features[:-1]))
    assert card.incompatibility(fewer) == "the feature columns changed (removed year)"
    assert "the classes changed" in card.incompatibility(dataclasses.replace(card, classes=["Adelie", "Gentoo"]))
    assert "the task changed" in card.incompatibility(dataclasses.replace(card, task="regression"))


def test_versions_are_found_by_tag_or_version_and_unknown_ones_listed(card, tmp_path):
    other = with_feature(card, "island", categories=["Biscoe"])
    held = ModelVersions(card, extras=[other], path=tmp_path / "roles.json")
    assert held.find(card.tag) is card and held.find(card.tag.split(":")[1]) is card
    with pytest.raises(
        UnknownVersion, match=f"unknown model version 'v9'; this server holds: {card.tag}, penguins:other"
    ):
        held.find("v9")
    with pytest.raises(IncompatibleVersion, match="lost categories"):
        held.answering("penguins:other")
    assert [(v["role"], v["compatible"]) for v in held.listing()] == [("champion", True), ("available", False)]


def test_the_canary_sends_the_same_record_the_same_way_and_about_its_share(card, tmp_path):
    challenger = dataclasses.replace(card, tag="penguins:challenger")
    held = ModelVersions(card, challenger, canary_percent=30, path=tmp_path / "roles.json")
    records = [{**PENGUIN, "body_mass_g": 3000 + i} for i in range(2000)]
    chosen = [held.for_record(r).tag for r in records]
    assert chosen == [
        held.for_record(dict(reversed(list(r.items())))).tag for r in records
    ]  # key order does not matter
    share = chosen.count("penguins:challenger") / len(records)
    assert 0.25 < share < 0.35
    assert all(0 <= canary_share(r) < 100 for r in records[:50])
    assert {ModelVersions(card, challenger, path=tmp_path / "r2.json").for_record(r).tag for r in records} == {
        card.tag
    }  # 0 %


def test_a_promotion_reaches_every_worker_through_the_roles_file(card, tmp_path, monkeypatch):
    monkeypatch.setattr(versions_module, "FOLLOW_S", 0.05)
    other = dataclasses.replace(card, tag="penguins:other")
    path = tmp_path / "roles.json"
    workers = [ModelVersions(card, extras=[other], path=path, load_card=lambda tag: other) for _ in range(2)]

    async def scenario():
        followers = [asyncio.create_task(w.follow(warm=None)) for w in workers]
        workers[0].promote("other")
        for _ in range(100):
            if workers[1].champion.tag == "penguins:other":
                break
            await asyncio.sleep(0.02)
        for task in followers:
            task.cancel()
        return [w.champion.tag for w in workers]

    assert asyncio.run(scenario()) == ["penguins:other", "penguins:other"]
    assert workers[1].role(card.tag) == "available"  # the previous champion stays held: a rollback is a promotion


def test_the_watcher_swaps_a_new_version_once_and_refuses_an_incompatible_one(tmp_path, monkeypatch):
    monkeypatch.setattr(versions_module, "FOLLOW_S", 0.05)
    first = ModelCard.from_model(trainer.train(PENGUINS_CSV, "species", name="watched", choices=HGB_ONLY).model)
    path = tmp_path / "roles.json"
    warmed: list[str] = []

    async def warm(card):
        warmed.append(card.tag)

    workers = [ModelVersions(first, watch="watched:latest", watch_s=0.05, path=path) for _ in range(2)]

    async def follow_until(condition):
        tasks = [asyncio.create_task(w.follow(warm)) for w in workers]
        for _ in range(200):
            if condition():
                break
            await asyncio.sleep(0.02)
        for task in tasks:
            task.cancel()

    second = trainer.train(PENGUINS_CSV, "species", name="watched", choices=HGB_ONLY).model
    asyncio.run(follow_until(lambda: all(w.champion.tag == str(second.tag) for w in workers)))
    assert [w.champion.tag for w in workers] == [str(second.tag)] * 2
    assert warmed == [str(second.tag)]  # one worker checked and warmed it; the other followed the roles file

    frame = pd.read_csv(PENGUINS_CSV).drop(columns=["year"])
    frame.to_csv(tmp_path / "no year.csv", index=False)
    third = trainer.train(tmp_path / "no year.csv", "species", name="watched", choices=HGB_ONLY).model
    asyncio.run(follow_until(lambda: str(third.tag) in (workers[0]._read() or {}).get("refused", {})))
    assert "removed year" in workers[0]._read()["refused"][str(third.tag)]
    assert [w.champion.tag for w in workers] == [str(second.tag)] * 2 and warmed == [str(second.tag)]
