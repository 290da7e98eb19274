"""ONNX models (e.g. a scikit-learn pipeline converted with skl2onnx), run with onnxruntime.

Inputs are mapped to the sample's columns by name, one [N, 1] input per column in the input's own type;
a model with a single 2-D float input takes the sample's numeric features in file order. Outputs: a label
and probabilities (a tensor, or skl2onnx's ZipMap of {class: p}) for a classifier, one value per row for a
regressor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tabserve.core.errors import DataError
from tabserve.core.schema import NUMERIC, FeatureSchema
from tabserve.models.base import CLASSIFICATION, REGRESSION, Expectation, Runtime, answers, plain
from tabserve.models.inputs import ModelInput

TYPES = {  # ONNX tensor types -> (numpy dtype, what the column must be)
    "tensor(float)": (np.float32, "numeric"),
    "tensor(double)": (np.float64, "numeric"),
    "tensor(int64)": (np.int64, "numeric"),
    "tensor(int32)": (np.int32, "numeric"),
    "tensor(bool)": (np.bool_, "boolean"),
    "tensor(string)": (object, "text"),
}


def is_model_file(head: bytes) -> bool:
    """An ONNX ModelProto starts with its ir_version field (tag 0x08) and names its operator sets."""
    return head[:1] == b"\x08" and (b"ai.onnx" in head or b"onnx" in head.lower())


def session(source: Path | bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(source) if isinstance(source, Path) else source, options, providers=["CPUExecutionProvider"]
    )


def class_labels(path: Path | bytes) -> list[Any] | None:
    """A classifier's labels from its ONNX-ML node attributes (classlabels_strings / classlabels_int64s)."""
    import onnx

    model = onnx.load_model_from_string(path) if isinstance(path, bytes) else onnx.load(str(path))
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_strings", "classlabels_int64s"):
                values = onnx.helper.get_attribute_value(attribute)
                return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


def expectation(sess: Any, labels: list[Any] | None) -> Expectation:
    import onnxruntime

    inputs = sess.get_inputs()
    outputs = sess.get_outputs()
    unknown = [f"{i.name} ({i.type})" for i in inputs if i.type not in TYPES]
    if unknown:
        raise DataError(f"the ONNX model has inputs of types this server cannot fill: {', '.join(unknown)}")
    if len(outputs) >= 2 or labels is not None:
        task, classes = CLASSIFICATION, labels
        if classes is None:
            raise DataError(
                "the ONNX model answers labels but names no classes (no classlabels_* attribute); "
                "convert it with skl2onnx"
            )
    else:
        task, classes = REGRESSION, None
    single = (
        len(inputs) == 1
        and len(inputs[0].shape or []) == 2
        and not (isinstance(inputs[0].shape[1], int) and inputs[0].shape[1] == 1)
    )
    columns = None if single else [i.name for i in inputs]
    kinds = {} if single else {i.name: TYPES[i.type][1] for i in inputs}
    return Expectation("onnx", task, classes, columns, kinds, {}, "onnxruntime", onnxruntime.__version__)


class ONNXRuntime(Runtime):
    family = "onnx"

    def __init__(self, model_bytes: bytes, schema: FeatureSchema, task: str, classes: list[Any] | None) -> None:
        self.model_bytes = model_bytes
        self.task = task
        self.classes = classes
        self._open(schema)

    def _open(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.session = session(self.model_bytes)
        inputs = self.session.get_inputs()
        self.single = len(inputs) == 1 and inputs[0].name not in schema.names
        if self.single:  # one matrix of the numeric features, in file order
            self.feeds = [
                (inputs[0].name, TYPES[inputs[0].type][0], [f.name for f in schema.features if f.kind == NUMERIC])
            ]
        else:
            self.feeds = [(i.name, TYPES[i.type][0], [i.name]) for i in inputs]
        self.input = ModelInput(schema, [name for _, _, names in self.feeds for name in names])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def feed(self, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        frame = self.input.frame(records)
        feeds = {}
        for name, dtype, columns in self.feeds:
            values = frame[columns].to_numpy()
            if dtype is object:  # missing text: the empty string (a string tensor has no null)
                values = np.where(frame[columns].isna().to_numpy(), "", values.astype(str)).astype(object)
            feeds[name] = values.astype(dtype)
        return feeds

    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not records:
            return []
        results = self.session.run(None, self.feed(records))
        if self.task != CLASSIFICATION:
            return answers(None, values=np.asarray(results[0]).reshape(len(records), -1)[:, 0])
        labels, probabilities = results[0], results[1] if len(results) > 1 else None
        if isinstance(probabilities, list):  # skl2onnx's ZipMap: one {class: p} per row
            probabilities = np.array([[row[c] for c in self.classes] for row in probabilities])
        return answers(self.classes, probabilities, [plain(v) for v in labels])

    def __getstate__(self) -> dict[str, Any]:  # an InferenceSession does not pickle: Spark gets the bytes
        return {"model_bytes": self.model_bytes, "schema": self.schema, "task": self.task, "classes": self.classes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model_bytes, self.task, self.classes = state["model_bytes"], state["task"], state["classes"]
        self._open(state["schema"])
