"""train.py's own pipelines, every family (tabserve/core/pipeline.py: the encoder, and the direct tree walk for
HistGradientBoosting), as a runtime."""

from __future__ import annotations

from typing import Any

from tabserve.core import pipeline
from tabserve.core.schema import FeatureSchema
from tabserve.models.base import CLASSIFICATION, REGRESSION, Runtime


class TrainedPipeline(Runtime):
    family = "tabserve"

    def __init__(self, fitted: Any, schema: FeatureSchema, classes: list[Any] | None = None) -> None:
        self.pipeline = fitted
        self.schema = schema
        self.task = CLASSIFICATION if hasattr(fitted[-1], "predict_proba") else REGRESSION
        # The card's labels: a family fitted on class indices (XGBoost) has 0..K-1 as its classes_.
        self.classes = (classes or pipeline.class_labels(fitted)) if self.task == CLASSIFICATION else None

    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return pipeline.predict_records(self.pipeline, self.schema, records, self.classes)

    def make_explainer(self) -> Any:
        from tabserve.explaining.explainers import for_trained

        return for_trained(self.pipeline, self.schema)
