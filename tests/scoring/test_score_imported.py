"""A model imported from elsewhere, scored on Spark: an ONNX classifier (tests/importing/models.py), whose
runtime travels to Spark's Python workers by pickle. Beside the built models' other tests (one xdist unit,
tests/conftest.py SHARED_UNITS), so they are built once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.scoring.scoring_data import SPARK, run_score

pytestmark = pytest.mark.slow  # a Spark run: 20 s or more, most of it Spark starting


def test_an_imported_onnx_model_scores_on_spark_as_the_model_itself(built_models, imported_models, tmp_path):
    """The runtime travels to Spark's Python workers by pickle (an onnxruntime session does not pickle: its
    model bytes do); every row answered as the model itself answers it."""
    built = built_models["onnx"]
    out = tmp_path / "onnx.parquet"
    run = run_score("--data", str(built.sample), "--out", str(out), "--model", imported_models["onnx"], *SPARK)
    assert run.returncode == 0, run.stderr[-3000:]
    scored = pd.read_parquet(out)
    own = built.own(built.frame())
    assert scored["prediction"].tolist() == own["labels"]
    got = scored[[f"proba_{c}" for c in own["classes"]]].to_numpy(dtype=float)
    assert (
        np.abs(got - own["probabilities"]).max() <= 1e-6
    )  # float32 inside: Spark's batches are not the test's one batch
