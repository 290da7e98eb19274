"""Which family a file holds, opening it at import (trust checks first), and loading a stored version's
runtime for serving and scoring. The one place that knows every family."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabserve.core.errors import DataError
from tabserve.core.schema import FeatureSchema
from tabserve.models import lightgbm as lgb_family
from tabserve.models import mlflow as mlflow_family
from tabserve.models import onnx as onnx_family
from tabserve.models import sklearn as sk_family
from tabserve.models import xgboost as xgb_family
from tabserve.models.base import Expectation, Runtime
from tabserve.models.inputs import ModelInput

# pickle, or joblib's gzip/zlib/bz2/xz compressions
PICKLE_MAGIC = (b"\x80", b"\x1f\x8b", b"\x78", b"BZh", b"\xfd7zXZ")
# What a Bento must install to load each library's models (pinned as in pyproject.toml's `models` extra).
REQUIREMENTS = {
    "lightgbm": "lightgbm==4.7.0",
    "xgboost": "xgboost==3.2.0",
    "skops": "skops==0.16.0",
    "onnxruntime": "onnxruntime==1.32.0",
}
SYSTEM_PACKAGES = {"lightgbm": ["libgomp1"]}  # LightGBM's wheel links the system's OpenMP runtime


@dataclass
class Opened:
    """A model file opened at import: its format, the loaded model and what it says it expects."""

    format: str  # skops, pickle, lightgbm, xgboost, onnx, mlflow
    model: Any
    expectation: Expectation
    artifact: Path  # the file (or MLflow directory) copied into the store
    trusted_types: list[str] = field(default_factory=list)
    serialization: str = ""  # skops, pickle, booster, onnx (MLflow: its flavour's)
    flavour: str = ""  # MLflow only
    store_tag: str = ""  # a model already in the BentoML store (--model bentoml:NAME): its tag
    inner: str = ""  # MLflow: the flavour's artifact, relative to the directory

    @property
    def family(self) -> str:
        return self.expectation.family

    def requirements(self) -> list[str]:
        needed = {"lightgbm": ["lightgbm"], "xgboost": ["xgboost"], "onnx": ["onnxruntime"]}.get(self.family, [])
        if self.serialization == "skops":
            needed.append("skops")
        return [REQUIREMENTS[n] for n in needed]

    def system_packages(self) -> list[str]:
        return SYSTEM_PACKAGES.get(self.family, [])


def detect(path: Path) -> str:
    """The format of a model file or directory, from its content (the extension only breaks ties)."""
    if path.is_dir():
        if mlflow_family.is_model_dir(path):
            return "mlflow"
        raise DataError(
            f"{path} is a directory without an MLmodel file; give a model file, or an MLflow model directory"
        )
    if path.name == mlflow_family.MLMODEL:
        return "mlflow"
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head:
        raise DataError(f"{path} is empty")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "schema.json" in archive.namelist():
                return "skops"
        raise DataError(f"{path} is a zip archive but not a skops file (no schema.json inside)")
    if lgb_family.is_model_file(head):
        return "lightgbm"
    if xgb_family.is_json_model(head):
        return "xgboost"
    if xgb_family.is_ubj_model(head):
        return "xgboost"
    if onnx_family.is_model_file(head) or path.suffix == ".onnx":
        return "onnx"
    if head.startswith(PICKLE_MAGIC):
        return "pickle"
    raise DataError(
        f"{path.name} is not a model file this server reads: a scikit-learn model (.skops, or .joblib/.pkl with "
        f"--trust-pickle), a LightGBM booster (.txt), an XGBoost booster (.json, .ubj), an ONNX model "
        "or an MLflow model directory"
    )


def refuse_pickle(path: Path, what: str = "") -> DataError:
    return DataError(
        f"{path.name} is a pickle{what}: loading it runs code from the file. If you trust it, add --trust-pickle; "
        f"better, save a scikit-learn model with skops (skops.io.dump) or a booster with its save_model"
    )


def load_pickle(path: Path) -> Any:
    import joblib

    return joblib.load(path)


STORE_PREFIX = "bentoml:"  # --model bentoml:NAME[:VERSION]: a model already in the BentoML store
STORE_ARTIFACTS = {  # BentoML's framework module -> the file its save_model writes (read here by content, as any file)
    "sklearn": "saved_model.pkl",
    "lightgbm": "saved_model.ubj",
    "xgboost": "saved_model.ubj",
    "onnx": "saved_model.onnx",
    "mlflow": "mlflow_model",
    "picklable_model": "saved_model.pkl",
}


def open_store_model(reference: str, trust_pickle: bool = False, trust: tuple[str, ...] = ()) -> Opened:
    """A model saved with bentoml.<framework>.save_model, opened as its file would be (its tag: `store_tag`).
    scikit-learn's is read with bentoml.sklearn.load_model (joblib: the user's own store, as BentoML itself trusts
    it); bentoml.picklable_model's is a cloudpickle of anything, so it needs --trust-pickle like any pickle."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    tag = reference.removeprefix(STORE_PREFIX)
    try:
        stored = bentoml.models.get(tag)
    except (BentoMLException, ValueError):
        names = sorted({str(m.tag.name) for m in bentoml.models.list()})
        raise DataError(
            f"model {tag!r} is not in the BentoML model store (it has: {', '.join(names) or 'no models'})"
        ) from None
    framework = str(stored.info.module).rsplit(".", 1)[-1]
    if "feature_schema" in stored.info.metadata:
        raise DataError(f"model {stored.tag} already has a feature schema: serve it as it is (MODEL_TAG={stored.tag})")
    if framework not in STORE_ARTIFACTS:
        raise DataError(
            f"model {stored.tag} was saved with {stored.info.module}; this server imports models saved with "
            f"bentoml.{', bentoml.'.join(STORE_ARTIFACTS)}"
        )
    artifact = Path(stored.path_of(STORE_ARTIFACTS[framework]))
    if framework == "picklable_model" and not trust_pickle:
        raise DataError(
            f"model {stored.tag} was saved with bentoml.picklable_model, a cloudpickle: "
            "loading it runs code from the file. If you trust it, add --trust-pickle"
        )
    if framework == "sklearn":
        model = bentoml.sklearn.load_model(stored)
        opened = Opened("pickle", model, family_expectation(model), artifact, serialization="pickle")
    elif framework == "xgboost":
        model = bentoml.xgboost.load_model(stored)  # a Booster, or the XGBModel it was saved from
        opened = Opened("xgboost", model, xgb_family.expectation(model), artifact, serialization="booster")
    else:  # LightGBM (a text model file, whatever its name), ONNX, MLflow, a cloudpickle: read as their files are
        opened = open_file(artifact, trust_pickle=True, trust=trust)
    opened.store_tag = str(stored.tag)
    return opened


def open_file(path: Path, trust_pickle: bool = False, trust: tuple[str, ...] = ()) -> Opened:
    """Detect, check trust, load, and read what the model expects. DataError with one line on any failure."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"model file {path} does not exist")
    fmt = detect(path)
    try:
        return _open(path, fmt, trust_pickle, tuple(trust))
    except (DataError, ModuleNotFoundError):
        raise
    except Exception as exc:  # a damaged file: the library's own complaint, in one line
        message = " ".join(str(exc).split())[:300] or exc.__class__.__name__
        raise DataError(f"{path.name} could not be read as a {fmt} model: {message}") from None


def _open(path: Path, fmt: str, trust_pickle: bool, trust: tuple[str, ...]) -> Opened:
    if fmt == "skops":
        model = load_skops_checked(path, trust)
        return Opened("skops", model, family_expectation(model), path, sorted(set(trust)), "skops")
    if fmt == "pickle":
        if not trust_pickle:
            raise refuse_pickle(path)
        model = load_pickle(path)
        return Opened("pickle", model, family_expectation(model), path, serialization="pickle")
    if fmt == "lightgbm":
        model = lgb_family.load_booster(path, first_in_a_child=True)
        return Opened("lightgbm", model, lgb_family.expectation(model), path, serialization="booster")
    if fmt == "xgboost":
        model = xgb_family.load_booster(path)
        return Opened("xgboost", model, xgb_family.expectation(model), path, serialization="booster")
    if fmt == "onnx":
        data = path.read_bytes()
        sess = onnx_family.session(data)
        labels = onnx_family.class_labels(data) if len(sess.get_outputs()) >= 2 else None
        return Opened("onnx", data, onnx_family.expectation(sess, labels), path, serialization="onnx")
    # MLflow: the flavour's artifact, with the signature's columns where the model does not name them
    directory = path if path.is_dir() else path.parent
    spec = mlflow_family.read(directory)
    inner = spec.artifact
    if spec.serialization in ("pickle", "cloudpickle"):
        if not trust_pickle:
            raise refuse_pickle(inner, f" (the MLflow {spec.flavour} flavour saved with {spec.serialization})")
        model = load_pickle(inner)
    elif spec.serialization == "skops":
        model = load_skops_checked(inner, trust)
    elif spec.flavour == "lightgbm":
        model = lgb_family.load_booster(inner, first_in_a_child=True)
    else:
        model = xgb_family.load_booster(inner)
    expectation = family_expectation(model)
    if spec.columns:
        if expectation.columns and expectation.columns != spec.columns:
            raise DataError(
                f"the MLflow signature's columns ({', '.join(spec.columns)}) "
                f"are not the model's ({', '.join(expectation.columns)})"
            )
        expectation.columns = spec.columns
        expectation.kinds = {**spec.kinds, **{c: k for c, k in expectation.kinds.items() if k == "categorical"}}
    return Opened(
        "mlflow",
        model,
        expectation,
        directory,
        sorted(set(trust)),
        spec.serialization,
        spec.flavour,
        inner=str(inner.relative_to(directory)),
    )


def load_skops_checked(path: Path, trust: tuple[str, ...]) -> Any:
    """A skops file, refused in one line listing the types skops does not trust unless --trust names them."""
    untrusted = [t for t in sk_family.untrusted_types(path) if t not in trust]
    if untrusted:
        raise DataError(
            f"{path.name} holds types skops does not trust: {', '.join(untrusted)}; "
            f"if you trust them, add --trust {','.join(untrusted)}"
        )
    return sk_family.load_skops(path, list(trust))


def family_expectation(model: Any) -> Expectation:
    """What a loaded object expects, by its family (a pickle may hold any of them)."""
    module = type(model).__module__.split(".")[0]
    if module == "lightgbm":
        return lgb_family.expectation(model)
    if module == "xgboost":
        return xgb_family.expectation(model)
    return sk_family.expectation(model)


def runtime(
    family: str,
    model: Any,
    schema: FeatureSchema,
    task: str,
    classes: list[Any] | None,
    columns: list[str],
    categories: dict[str, list[Any]],
    labels_from_predict: bool = False,
) -> Runtime:
    """The runtime of a loaded model, with the columns and categories it was imported with."""
    if family == "lightgbm":
        return lgb_family.LightGBMRuntime(model, schema, columns, categories, task, classes)
    if family == "xgboost":
        return xgb_family.XGBoostRuntime(model, ModelInput(schema, columns, categories), task, classes)
    if family == "onnx":
        return onnx_family.ONNXRuntime(model, schema, task, classes)
    return sk_family.SklearnRuntime(model, ModelInput(schema, columns), task, classes, labels_from_predict)


def load(source: dict[str, Any], path: Path, schema: FeatureSchema, task: str, classes: list[Any] | None) -> Runtime:
    """A stored imported version's runtime. `path`: its artifact in the store, checksum already verified."""
    serialization, family = source["serialization"], source["family"]
    inner = path / source["inner"] if source.get("inner") else path
    if serialization == "skops":
        model = sk_family.load_skops(inner, source.get("trusted_types", []))
    elif serialization in ("pickle", "cloudpickle"):
        model = load_pickle(inner)  # the user trusted this file at import; its checksum is the one they trusted
    elif family == "lightgbm":
        model = lgb_family.load_booster(inner)
    elif family == "xgboost":
        model = xgb_family.load_booster(inner)
    else:
        model = inner.read_bytes()
    return runtime(
        family,
        model,
        schema,
        task,
        classes,
        source["columns"],
        source.get("categories", {}),
        source.get("labels_from_predict", False),
    )
