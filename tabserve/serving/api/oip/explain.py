"""Explanations over /v2: the infer request's explanation options, and the answers' explanations as output tensors.

Asked by the request parameter `explain` (a JSON boolean), `explain_class` (a label: the class to explain; implies
explain), or by naming an explanation output in `outputs`. The outputs, the answer item's `explanation` as tensors:

    contributions       FP64  [N, F]  each row's contribution per input feature, row-major; `parameters`:
                                      features (the F columns' order: a JSON array as text), method, output
    explanation_output  BYTES [N]     what each row explains ("softmax logit of 'Gentoo'", "the predicted value")
    explanation_base    FP64  [N]     the expected output over the training data
    explanation_value   FP64  [N]     the explained output: base + the sum of the row's contributions

Apart from datatypes.py because it is one feature with its own options and errors; the checks against the version
that answers (labels, a version without explanations) are the request path's own (tabserve/explaining/options.py).
"""

from __future__ import annotations

import json
from typing import Any

from tabserve.serving.api.oip.messages import InferenceRequest, OipError

EXPLANATION_OUTPUTS = ("contributions", "explanation_output", "explanation_base", "explanation_value")


def explain_options(request: InferenceRequest) -> tuple[str | None, str | None]:
    """The request's explanation options as the request path takes them (tabserve/explaining/options.py): explain as
    "true"/"false" or None, explain_class as a label's text or None. An explanation output named in `outputs` is
    explain=true."""
    parameters = request.parameters or {}
    explain = parameters.get("explain")
    if explain is not None and not isinstance(explain, bool):
        raise OipError(
            400, f"invalid input: parameter 'explain' must be true or false (a JSON boolean), not {json.dumps(explain)}"
        )
    explain_class = parameters.get("explain_class")
    if explain_class is not None and not isinstance(explain_class, str):
        # a label as its text (1, true): the labels' JSON spelling; anything else is no label, and the request
        # path's refusal lists the labels
        explain_class = json.dumps(explain_class)
    named = [o.name for o in request.outputs or [] if o.name in EXPLANATION_OUTPUTS]
    if named and explain is False:
        raise OipError(
            400,
            f"invalid input: the output(s) {', '.join(named)} are explanations; leave out the parameter explain: false",
        )
    if explain is None:
        return ("true" if named else None), explain_class
    return ("true" if explain else "false"), explain_class


def explanation_tensors(answers: list[dict[str, Any]], wanted: list[str]) -> dict[str, dict[str, Any]]:
    """The wanted explanation outputs of answer items that carry their `explanation`, by name."""
    explanations = [a["explanation"] for a in answers]
    features = list(explanations[0]["contributions"])  # the input features, in the schema's order
    texts = [e["output"] for e in explanations]
    rows = len(explanations)
    tensors = {
        "contributions": lambda: {
            "name": "contributions",
            "datatype": "FP64",
            "shape": [rows, len(features)],
            "data": [float(e["contributions"][f]) for e in explanations for f in features],
            "parameters": {
                "features": json.dumps(features),
                "method": explanations[0]["method"],
                "output": common_output(texts),
            },
        },
        "explanation_output": lambda: {
            "name": "explanation_output",
            "datatype": "BYTES",
            "shape": [rows],
            "data": texts,
        },
        "explanation_base": lambda: {
            "name": "explanation_base",
            "datatype": "FP64",
            "shape": [rows],
            "data": [float(e["base"]) for e in explanations],
        },
        "explanation_value": lambda: {
            "name": "explanation_value",
            "datatype": "FP64",
            "shape": [rows],
            "data": [float(e["value"]) for e in explanations],
        },
    }
    return {name: tensors[name]() for name in wanted}


def common_output(texts: list[str]) -> str:
    """What every row's contributions explain, in one line: the rows' output when they share it (a regression, an
    explain_class, rows of one predicted class), else what the rows' outputs have in common."""
    if len(set(texts)) == 1:
        return texts[0]
    space = texts[0].split(" of ")[0]  # "softmax logit of 'Gentoo'": the space, then the class
    return f"{space} of each row's predicted class (explanation_output)"
