"""The Open Inference Protocol V2 (KServe's "v2", Triton's HTTP API, MLServer), REST, mounted at /v2.

Routes: GET /v2 (server metadata), /v2/health/live, /v2/health/ready, /v2/models/{name}[/versions/{version}]
(model metadata: one input per feature, the outputs `predict` and, for classifiers, `predict_proba`),
.../ready, and POST .../infer.

Infer takes the columnar form: one named input per feature, a column of N values (`shape` [N] or [N, 1],
`data` a flat list, or binary data after the JSON header: Triton's binary tensor extension, which
tritonclient sends by default); MLServer's pandas codec (`parameters: {"content_type": "pd"}`) is the
same form. A missing value (nullable features only) is JSON null in `data`; as binary data has no null,
NaN in a float tensor (FP16/FP32/FP64) and the empty string in a BYTES tensor are missing too. The
columns become records validated by the service's strict Record type, so a bad value gets the same 400
message as /predict (naming the row for N > 1). One row goes through the entry service's cache and
in-flight batching (`predict_one`), more rows through its bulk path (`predict_many`). Answers are JSON;
errors are {"error": "<one line>", "detail": [...]}, the protocol's {"error"} plus the service's details.

Explanations (as /predict?explain=true): the request parameter `explain: true` (or `explain_class: LABEL`, or an
explanation output named in `outputs`) adds the outputs `contributions` (FP64 [N, F], its `parameters` naming the
F features in order), `explanation_output` (BYTES [N]: what each row explains), `explanation_base` and
`explanation_value` (FP64 [N]: base + the row's contributions = value). They are not in the model's metadata,
whose outputs are the answer's defaults.

By job:
    messages.py   the protocol's request and answer models, and OipError (a refusal in its shape)
    codec.py      the infer body: JSON, or a JSON header then Triton's binary tensor data
    datatypes.py  V2 datatypes <-> feature kinds, the model's metadata, columns -> records, answers -> outputs
    explain.py    the explanation options of a request, the answers' explanations as output tensors
    app.py        the FastAPI app (`create_app`) and `ServerRoot` (GET /v2 itself)
"""

from tabserve.serving.api.oip.app import ServerRoot, create_app
from tabserve.serving.api.oip.datatypes import model_metadata, output_datatype, output_names, outputs
from tabserve.serving.api.oip.explain import EXPLANATION_OUTPUTS

__all__ = [
    "EXPLANATION_OUTPUTS",
    "ServerRoot",
    "create_app",
    "model_metadata",
    "output_datatype",
    "output_names",
    "outputs",
]
