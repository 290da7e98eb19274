"""MLflow model directories, read from their documented `MLmodel` file without the mlflow package: the
flavour's artifact is loaded with its own library (sklearn: skops, or a pickle the user trusts; lightgbm:
the booster file, or a pickle; xgboost: the booster file), and the signature names the input columns and
their types. The mlflow package is not needed to import or to serve (it does not go into the Bento)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tabserve.core.errors import DataError

MLMODEL = "MLmodel"
FLAVOURS = ("sklearn", "lightgbm", "xgboost")  # in this order of preference; python_function only points at one
SIGNATURE_KINDS = {
    "double": "numeric",
    "float": "numeric",
    "long": "numeric",
    "integer": "numeric",
    "string": "text",
    "boolean": "boolean",
    "datetime": "text",
}


@dataclass(frozen=True)
class MLflowModel:
    flavour: str  # sklearn, lightgbm or xgboost
    artifact: Path  # the flavour's model file
    serialization: str  # skops, pickle, cloudpickle, or the booster's own format (booster)
    columns: list[str] | None  # from the signature
    kinds: dict[str, str]


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / MLMODEL).is_file()


def read(directory: Path) -> MLflowModel:
    import yaml

    try:
        spec = yaml.safe_load((directory / MLMODEL).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{directory / MLMODEL} is not a readable MLmodel file ({exc.__class__.__name__})") from None
    flavours = (spec or {}).get("flavors") or {}
    flavour = next((f for f in FLAVOURS if f in flavours), None)
    if flavour is None:
        raise DataError(
            f"the MLflow model's flavours are {', '.join(flavours) or 'none'}; "
            "this server loads sklearn, lightgbm and xgboost models"
        )
    info = flavours[flavour]
    if flavour == "sklearn":
        artifact, serialization = (
            info.get("pickled_model", "model.pkl"),
            info.get("serialization_format", "cloudpickle"),
        )
    else:
        artifact = info.get("data", "model.lgb" if flavour == "lightgbm" else "model.xgb")
        model_class = str(info.get("model_class", ""))
        serialization = (
            "booster" if model_class.endswith("Booster") or not artifact.endswith((".pkl", ".pickle")) else "pickle"
        )
    columns, kinds = None, {}
    inputs = ((spec or {}).get("signature") or {}).get("inputs")
    if inputs:
        fields = json.loads(inputs)
        if all("name" in f and "type" in f for f in fields):  # a column-based signature (tensor ones name no columns)
            columns = [f["name"] for f in fields]
            kinds = {f["name"]: SIGNATURE_KINDS.get(f["type"], "text") for f in fields}
    path = directory / artifact
    if not path.exists():
        raise DataError(f"the MLflow model's {flavour} artifact {artifact} is missing from {directory}")
    return MLflowModel(flavour, path, serialization, columns, kinds)
