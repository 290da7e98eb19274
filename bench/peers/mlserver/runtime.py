"""Seldon MLServer custom runtime for the project's fitted pipeline (bench/peers/mlserver/model-settings.json).

Why not the stock `mlserver_sklearn.SKLearnModel`: it runs one model call per requested output, so the
label (`predict`) and the probabilities (`predict_proba`) in one answer are two pipeline calls per batch,
twice the model's work, and its probabilities come without the class names. MLServer's documented way for
anything beyond a bare call is a custom runtime (an `MLModel` subclass); this one keeps the documented
parts: the request is decoded with MLServer's own `PandasCodec` (content type "pd": one V2 input per
column, strings as BYTES with content type "str", missing values as null), adaptive batching and
parallel workers are MLServer's, and the answer is encoded with `PandasCodec` too. Per batch: one
predict_proba; outputs `label` (BYTES) and one FP64 output per class, named by the class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from common import FittedPipeline  # bench/peers/common.py (PYTHONPATH)
from mlserver import MLModel
from mlserver.codecs import PandasCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class PipelineRuntime(MLModel):
    async def load(self) -> bool:
        self._fitted = FittedPipeline(await get_model_uri(self._settings))  # parameters.uri: the pipeline.joblib
        self._labels = np.asarray(self._fitted.keys, dtype=object)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        frame = self._fitted.frame(self.decode_request(payload, default_codec=PandasCodec))
        best, probabilities = self._fitted.predict(frame)
        answer = pd.DataFrame(probabilities, columns=self._fitted.keys)
        # object, not pandas 3's "str" dtype: MLServer 1.7's codecs (older than pandas 3) know only numpy dtypes.
        answer.insert(0, "label", pd.Series(self._labels[best], dtype=object))
        return PandasCodec.encode_response(self.name, answer, model_version=self.version)
