"""The model as tensors: V2 datatypes for the feature kinds and the labels, the model's metadata, the
request's columns as validated records, and the answers as output tensors.

Apart from the codec (bytes on the wire) and the app (routes): this is the one place that knows how a
feature kind and a V2 datatype map onto each other, in both directions.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ValidationError

from tabserve.core.card import ModelCard
from tabserve.core.errors import pydantic_detail, repeated, summarize
from tabserve.core.pipeline import CLASSIFICATION
from tabserve.core.schema import BOOLEAN, CATEGORICAL, NUMERIC, Feature
from tabserve.serving.api.oip.codec import decode_base64, decode_text
from tabserve.serving.api.oip.explain import EXPLANATION_OUTPUTS, explanation_tensors
from tabserve.serving.api.oip.messages import InferenceRequest, OipError, RequestInput, RequestOutput

PLATFORM = "scikit-learn"
INTEGERS = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
FLOATS = ("FP16", "FP32", "FP64")
MAX_LISTED_ERRORS = 100  # row errors listed in `detail`; the message counts them all


# --- The model's tensors ---------------------------------------------------------------------------


def input_datatype(feature: Feature) -> str:
    """The datatype metadata declares for a feature."""
    if feature.kind == NUMERIC:
        return "FP64"
    if feature.kind == BOOLEAN:
        return "BOOL"
    if feature.kind == CATEGORICAL and feature.categories and isinstance(feature.categories[0], int):
        return "INT64"
    return "BYTES"  # text categories, dates and date-times (ISO 8601)


def accepted_datatypes(feature: Feature) -> tuple[str, ...]:
    """The datatypes infer accepts for a feature: numbers may come as any number type."""
    declared = input_datatype(feature)
    if declared == "FP64":
        return (*FLOATS, *INTEGERS)
    if declared == "INT64":
        return INTEGERS
    return (declared,)


def output_datatype(card: ModelCard) -> str:
    """The datatype of `predict`: the labels' type, or FP64 for regression."""
    if card.task != CLASSIFICATION or not card.classes:
        return "FP64"
    first = card.classes[0]
    if isinstance(first, bool):
        return "BOOL"
    if isinstance(first, int):
        return "INT64"
    return "BYTES"


def output_names(card: ModelCard) -> list[str]:
    return ["predict", "predict_proba"] if card.has_probabilities else ["predict"]


def class_parameters(card: ModelCard) -> dict[str, str]:
    """The class order of predict_proba's columns: a JSON array, as text (parameter values are scalars)."""
    return {"classes": json.dumps(card.classes)}


def model_metadata(card: ModelCard) -> dict[str, Any]:
    name, version = split_tag(card.tag)
    inputs = [{"name": f.name, "datatype": input_datatype(f), "shape": [-1]} for f in card.schema.features]
    outputs = [{"name": "predict", "datatype": output_datatype(card), "shape": [-1]}]
    if "predict_proba" in output_names(card):
        outputs.append(
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [-1, len(card.classes or [])],
                "parameters": class_parameters(card),
            }
        )
    return {"name": name, "versions": [version], "platform": PLATFORM, "inputs": inputs, "outputs": outputs}


def split_tag(tag: str) -> tuple[str, str]:
    name, _, version = tag.partition(":")
    return name, version


# --- Columns -> records ----------------------------------------------------------------------------


def column(tensor: RequestInput, feature: Feature) -> list[Any]:
    """One input as the column of JSON-like values its feature's Record field validates."""
    name = tensor.name
    if tensor.datatype not in accepted_datatypes(feature):
        expected = input_datatype(feature)
        raise OipError(
            400,
            f"invalid input: input {name!r}: datatype {tensor.datatype} "
            f"does not fit the {feature.type_name} feature; send {expected}"
            + (" (any number type is accepted)" if expected == "FP64" else ""),
        )
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise OipError(
            400, f"invalid input: input {name!r}: shape {shape} is not a column; send [N] or [N, 1] with N >= 1"
        )
    if tensor.data is None:
        raise OipError(400, f"invalid input: input {name!r} has no data")
    data = tensor.data
    if len(shape) == 2 and all(isinstance(row, list) for row in data):  # [[v], [v], ...]: one list per row
        if any(len(row) != 1 for row in data):
            raise OipError(400, f"invalid input: input {name!r}: shape {shape} wants one value per row")
        data = [row[0] for row in data]
    if len(data) != shape[0]:
        raise OipError(
            400, f"invalid input: input {name!r}: shape {shape} says {shape[0]} values but data has {len(data)}"
        )
    if tensor.datatype in FLOATS:
        return [None if isinstance(v, float) and math.isnan(v) else v for v in data]
    if tensor.datatype == "BYTES":  # no null in binary BYTES (tritonclient sends None as "None"): "" is missing
        if (tensor.parameters or {}).get("content_type") == "base64":
            data = [v if not isinstance(v, str) else decode_text(name, decode_base64(name, v)) for v in data]
        return [None if v == "" else v for v in data]
    return list(data)


def records_from_request(
    request: InferenceRequest, card: ModelCard, record_type: type[BaseModel], max_records: int
) -> list[dict[str, Any]]:
    """The request's columns as validated records (dicts as Record.model_dump() gives them), in row order."""
    content_type = (request.parameters or {}).get("content_type")
    if content_type not in (None, "pd"):
        raise OipError(
            400,
            f"invalid input: request content_type {content_type!r} is not supported; "
            "send one input per feature (no content_type, or 'pd')",
        )
    schema = card.schema
    names = [t.name for t in request.inputs]
    twice = repeated(names)
    if twice:
        raise OipError(400, f"invalid input: input(s) given more than once: {', '.join(twice)}")
    unknown = [n for n in names if n not in schema.names]
    if unknown:
        raise OipError(
            400,
            f"invalid input: unknown input(s): {', '.join(unknown)}; this model's inputs: {', '.join(schema.names)}",
        )
    missing = [n for n in schema.names if n not in names]
    if missing:
        raise OipError(
            400,
            f"invalid input: missing input(s): {', '.join(missing)}; "
            "send every feature as an input (null values for a nullable one)",
        )
    columns = {t.name: column(t, schema[t.name]) for t in request.inputs}
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise OipError(
            400, f"invalid input: the inputs have different lengths ({listed}); every column needs one value per row"
        )
    rows = next(iter(lengths.values()))
    if rows > max_records:
        raise OipError(400, f"invalid input: {rows} rows; at most {max_records} in one request")
    records, detail, failed = [], [], 0
    for i in range(rows):
        try:
            records.append(
                record_type.model_validate({name: values[i] for name, values in columns.items()}).model_dump()
            )
        except ValidationError as exc:
            failed += 1
            prefix = (f"row {i + 1}",) if rows > 1 else ()
            detail.extend(pydantic_detail(exc.errors(include_context=False, include_input=False), prefix=prefix))
    if failed:
        first = summarize(detail[:1])
        message = (
            first if rows == 1 and len(detail) == 1 else f"{first} ({len(detail)} problems in {failed} of {rows} rows)"
        )
        raise OipError(400, message, detail[:MAX_LISTED_ERRORS])
    return records


# --- Answers -> output tensors ---------------------------------------------------------------------


def wanted_outputs(card: ModelCard, requested: list[RequestOutput] | None, explained: bool = False) -> list[str]:
    """The names of the outputs to answer, in order: those requested (default: the model's outputs), and when the
    answers are explained, the explanation outputs (those requested, or all of them). An unknown name is refused."""
    available = output_names(card)
    known = [*available, *EXPLANATION_OUTPUTS]
    wanted = [o.name for o in requested] if requested else list(available)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        listed = ", ".join(available) + (
            f"; with explanations: {', '.join(EXPLANATION_OUTPUTS)}" if card.explanation else ""
        )
        raise OipError(400, f"invalid input: unknown output(s): {', '.join(unknown)}; this model's outputs: {listed}")
    named = [name for name in wanted if name in EXPLANATION_OUTPUTS]
    if explained:
        return wanted if named else [*wanted, *EXPLANATION_OUTPUTS]
    if named:  # the app asks for explanations when one is named; a direct call may not have
        raise OipError(400, f"invalid input: the output(s) {', '.join(named)} need the parameter explain: true")
    return wanted


def outputs(
    card: ModelCard, answers: list[dict[str, Any]], requested: list[RequestOutput] | None, explained: bool = False
) -> list[dict[str, Any]]:
    """The output tensors of the answers (API items: prediction, probabilities, explanation when `explained`), as
    requested."""
    wanted = wanted_outputs(card, requested, explained)
    explanations = explanation_tensors(answers, [n for n in wanted if n in EXPLANATION_OUTPUTS]) if explained else {}
    tensors = []
    for name in wanted:
        if name in explanations:
            tensors.append(explanations[name])
        elif name == "predict":
            tensors.append(
                {
                    "name": "predict",
                    "datatype": output_datatype(card),
                    "shape": [len(answers)],
                    "data": [a["prediction"] for a in answers],
                }
            )
        else:
            keys = [
                json.dumps(c) if isinstance(c, bool) else str(c) for c in card.classes or []
            ]  # probability keys: label_text
            data = [a["probabilities"][k] for a in answers for k in keys]
            tensors.append(
                {
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": [len(answers), len(keys)],
                    "data": data,
                    "parameters": class_parameters(card),
                }
            )
    return tensors
