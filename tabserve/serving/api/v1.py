"""The /v1 routes BentoML's POST-only APIs cannot express: GET with path and query parameters,
the model card, and an HTML form. Mounted into the entry service with @bentoml.asgi_app.

Predictions go through the entry service's own path (cache, then the batched model service),
which `predictor()` returns; errors use the same {"error", "detail"} body as everything else.
"""

import copy
import logging
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, ValidationError, create_model

from tabserve.core.card import ModelCard, feature_dict
from tabserve.core.errors import InvalidInput, ModelUnavailable, error_body, pydantic_detail, summarize
from tabserve.explaining.options import EXPLAIN_CLASS_DOC, EXPLAIN_DOC
from tabserve.serving.api import pages
from tabserve.serving.api.entities import (
    EntityLookup,
    EntityNotFound,
    InvalidEntity,
    LookupFailed,
    NotConfigured,
    entity_record,
)

logger = logging.getLogger("tabserve")


def create_app(
    card: ModelCard,
    record_type: type[BaseModel],
    prediction_type: type[BaseModel],
    settings: dict[str, Any],
    predictor: Callable[[], Any],
    entities: EntityLookup | None = None,
    admin_key: str = "",
) -> FastAPI:
    """`predictor()` gives the entry service: `async predict_one(record, version) -> (item, cache_hit)` and
    `versions` (tabserve/serving/rollout/versions.py); `card` is the one the API types were built from. `entities`
    reads an entity's features for GET /entities/{id}/predict (the route exists only with it); `admin_key`
    enables POST /admin/promote (the route exists only with it)."""
    # No `from __future__ import annotations` in this module: FastAPI must see the real
    # query_record class in the route signature to expand it into query parameters.
    schema = card.schema
    query_record = schema.record_model("QueryRecord", strict=False)  # query strings are text
    # The record's fields and the request's options share the query string (the record forbids other keys).
    explained_query = explained_query_record(query_record)
    overrides_record = optional_fields(query_record, "EntityOverrides")
    entity_prediction = create_model(
        "EntityPrediction",
        __base__=prediction_type,
        entity_id=(str, Field(description="The entity's id, as given in the path.", examples=["42"])),
    )

    app = FastAPI(title="tabserve /v1", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = pydantic_detail(exc.errors(), request=True)
        return JSONResponse(error_body(summarize(detail), detail), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict):
            return JSONResponse(exc.detail, status_code=exc.status_code)
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(InvalidInput)
    async def invalid_option(request: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.detail), status_code=exc.status)

    @app.exception_handler(ModelUnavailable)
    async def unavailable(request: Request, exc: ModelUnavailable) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=exc.status, headers={"Retry-After": "1"})

    @app.get("/model", summary="The model card of the champion (the version the unversioned routes answer with)")
    async def model_card() -> dict[str, Any]:
        return predictor().versions.champion.to_dict(serving=settings)

    @app.get("/features", summary="Every feature of the model's input")
    async def features() -> list[dict[str, Any]]:
        return [feature_dict(f) for f in schema.features]

    @app.get("/features/{name}", summary="One feature: type, categories, nullable, training range")
    async def feature(name: str) -> dict[str, Any]:
        try:
            return feature_dict(schema[name])
        except KeyError:
            detail = [{"loc": ["name"], "msg": f"known features: {', '.join(schema.names)}", "type": "not_found"}]
            raise HTTPException(404, error_body(f"unknown feature {name!r}", detail)) from None

    @app.get("/predict", summary="Predict one record given as query parameters", response_model=prediction_type)
    async def predict(record: Annotated[explained_query, Query()], response: Response) -> Any:
        values, options = split_options(record)
        item, hit = await predictor().predict_one(values, explain=options)
        response.headers["X-Cache"] = "hit" if hit else "miss"
        return item

    @app.exception_handler(EntityNotFound)
    async def unknown_entity(request: Request, exc: EntityNotFound) -> JSONResponse:
        detail = [{"loc": ["id"], "msg": str(exc), "type": "not_found"}]
        return JSONResponse(error_body(str(exc), detail), status_code=404)

    @app.exception_handler(LookupFailed)
    async def lookup_failed(request: Request, exc: LookupFailed) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(NotConfigured)
    async def not_configured(request: Request, exc: NotConfigured) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=501)

    @app.exception_handler(InvalidEntity)
    async def invalid_entity(request: Request, exc: InvalidEntity) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.detail), status_code=422)

    if entities is not None:

        @app.get(
            "/entities/{id}/predict",
            summary="Predict for an entity whose features are in the feature table",
            response_model=entity_prediction,
        )
        async def predict_entity(
            entity_id: Annotated[str, Path(alias="id", description="The entity's id in the feature table")],
            overrides: Annotated[overrides_record, Query()],
            response: Response,
        ) -> Any:
            """Reads the entity's row (FEATURE_TABLE in FEATURE_DB_URL, by FEATURE_ID_COLUMN or the primary key) and
            predicts as POST /predict would with that record. Query parameters give features instead of the
            row's values, or those the table lacks. 404: no such entity; 422: the row holds a value the model
            cannot take (the error names the column); 501: no feature table is configured (the answer says how to
            load one); 503: the configured database is down, the table missing, or the lookup slower than
            FEATURE_DB_TIMEOUT_MS."""
            found = await entities.lookup(entity_id)
            record = entity_record(
                schema, record_type, found, overrides.model_dump(exclude_unset=True), entity_id, entities.table_name
            )
            item, hit = await predictor().predict_one(record)
            response.headers["X-Cache"] = "hit" if hit else "miss"
            return {**item, "entity_id": entity_id}

    @app.get("/form", response_class=HTMLResponse, summary="An HTML form for one prediction")
    async def form() -> HTMLResponse:
        return HTMLResponse(pages.form_page(card))

    form_body = {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": query_record.model_json_schema()}},
        }
    }

    @app.post(
        "/form",
        response_class=HTMLResponse,
        summary="Submit the form (application/x-www-form-urlencoded)",
        openapi_extra=form_body,
    )
    async def submit(request: Request) -> HTMLResponse:
        fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        unknown = sorted(set(fields) - set(schema.names))
        cells = {name: fields.get(name, "") for name in schema.names}
        try:
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(unknown)}")
            record = record_type.model_validate(schema.parse_row(cells)).model_dump()
        except ValidationError as exc:
            messages = [
                f"{d['loc'][0]}: {d['msg']}"
                for d in pydantic_detail(exc.errors(include_context=False, include_input=False))
            ]
            return HTMLResponse(pages.form_page(card, cells, messages), status_code=400)
        except ValueError as exc:
            return HTMLResponse(pages.form_page(card, cells, [str(exc)]), status_code=400)
        # The version that answers (the champion, or the challenger for a canary share) is explained when it can be:
        # the result page draws each feature's contribution. Explanations never fail the form: without them (or
        # when the model side cannot give them after all) the page shows the answer alone.
        answering = predictor().versions.for_record(record)
        if answering.explanation:
            try:
                item, _ = await predictor().predict_one(record, card=answering, explain=("true", None))
                return HTMLResponse(pages.result_page(card, item, record))
            except InvalidInput as exc:
                logger.warning("the form's answer from %s is not explained: %s", answering.tag, exc.message)
        item, _ = await predictor().predict_one(record, card=answering)
        return HTMLResponse(pages.result_page(card, item, record))

    from tabserve.serving.observe.drift import drift_router  # GET /v1/drift: live traffic against the training data

    app.include_router(drift_router(lambda: predictor().versions.champion))
    app.include_router(versions_router(record_type, prediction_type, explained_query, predictor, admin_key))
    return app


OPTIONS: dict[type, tuple[str, ...]] = {}  # query record with options -> the option names it added


def explained_query_record(query_record: type[BaseModel]) -> type[BaseModel]:
    """The query record with the explanation options beside the features (a feature of the same name wins)."""
    options = {
        "explain": (str | None, Field(None, description=EXPLAIN_DOC, examples=["true"])),
        "explain_class": (str | None, Field(None, description=EXPLAIN_CLASS_DOC)),
    }
    free = {name: option for name, option in options.items() if name not in query_record.model_fields}
    model = create_model("QueryRecord", __base__=query_record, **free)
    OPTIONS[model] = tuple(free)
    return model


def split_options(record: BaseModel) -> tuple[dict[str, Any], tuple[str | None, str | None]]:
    """(the record's values, (explain, explain_class)) from a query record with options."""
    values = record.model_dump()
    added = OPTIONS.get(type(record), ())
    explain, explain_class = (values.pop(name) if name in added else None for name in ("explain", "explain_class"))
    return values, (explain, explain_class)


def optional_fields(model: type[BaseModel], name: str) -> type[BaseModel]:
    """`model` with every field optional and unset by default: values given instead of others."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        optional = copy.copy(info)
        optional.default, optional.default_factory = None, None
        described = (info.description or "").replace(" Required.", "").replace(" May be null.", "")
        optional.description = f"{described} Given instead of the entity's value in the table.".strip()
        # The field's constraints (a date's lax parsing, a number's bounds) belong to the value, not to
        # `... | None`: pydantic cannot apply `strict` to a nullable schema.
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        optional.metadata = []
        fields[key] = (annotation | None, optional)
    return create_model(name, __config__=model.model_config, **fields)


# --- model versions: /models, /models/{version}[/predict|/comparison], /admin/promote ---------------------------


class VersionSummary(BaseModel):
    tag: str = Field(examples=["penguins:abc123"])
    created: str = Field(description="When the version was saved (ISO 8601).")
    task: str
    metrics: dict[str, float] = Field(description="Held-out metrics from training.")
    role: str = Field(
        description="champion (answers the unversioned routes), challenger (scored in the champion's shadow) "
        "or available."
    )
    compatible: bool = Field(
        description="Whether it can answer behind this server's API types (same columns, kinds and classes)."
    )
    incompatible_because: str | None = None


class Promotion(BaseModel):
    version: str = Field(description="A held version: its tag or the version part.", examples=["penguins:abc123"])
    model_config = {"extra": "forbid"}


def versions_router(
    record_type: type[BaseModel],
    prediction_type: type[BaseModel],
    query_record: type[BaseModel],
    predictor: Callable[[], Any],
    admin_key: str,
):
    from fastapi import APIRouter, Body

    from tabserve.serving.rollout.versions import IncompatibleVersion, UnknownVersion

    router = APIRouter()

    def held(version: str, answering: bool = False) -> ModelCard:
        versions = predictor().versions
        try:
            return versions.answering(version) if answering else versions.find(version)
        except UnknownVersion as exc:
            detail = [
                {"loc": ["path", "version"], "msg": f"known versions: {', '.join(versions.held)}", "type": "not_found"}
            ]
            raise HTTPException(404, error_body(str(exc), detail)) from None
        except IncompatibleVersion as exc:
            raise HTTPException(409, error_body(str(exc))) from None

    @router.get(
        "/models",
        summary="Every model version this server holds, with its role",
        response_model=list[VersionSummary],
        response_model_exclude_none=True,
    )
    async def list_versions() -> Any:
        return predictor().versions.listing()

    @router.get("/models/{version}", summary="A held version's model card")
    async def version_card(
        version: Annotated[str, Path(description="Its tag (name:version) or the version alone")],
    ) -> dict[str, Any]:
        card = held(version)
        return {**card.to_dict(), "role": predictor().versions.role(card.tag)}

    @router.get(
        "/models/{version}/report",
        summary="A held version's training report (one HTML page: leaderboard, plots, importance)",
        response_class=HTMLResponse,
        responses={404: {"description": "Not a held version, or a version without a training report."}},
    )
    async def version_report(
        version: Annotated[str, Path(description="Its tag (name:version) or the version alone")],
    ) -> HTMLResponse:
        import bentoml

        from tabserve.core.store import REPORT_FILE

        card = held(version)
        report = FilePath(bentoml.models.get(card.tag).path_of(REPORT_FILE))
        if not report.is_file():
            why = "it was imported with import_model.py" if card.imported else "it was trained before reports were kept"
            raise HTTPException(
                404, error_body(f"version {card.tag} has no training report: {why}; train.py writes one per version")
            )
        return HTMLResponse(report.read_text(encoding="utf-8"))

    @router.post(
        "/models/{version}/predict", summary="Predict one record with this version", response_model=prediction_type
    )
    async def predict_with(
        version: Annotated[str, Path(description="Its tag (name:version) or the version alone")],
        record: Annotated[record_type, Body()],
        response: Response,
        explain: Annotated[str | None, Query(description=EXPLAIN_DOC, examples=["true"])] = None,
        explain_class: Annotated[str | None, Query(description=EXPLAIN_CLASS_DOC)] = None,
    ) -> Any:
        """The body is the record, as for POST /predict. 404: a version this server does not hold (the error lists
        those it does); 409: a held version whose feature schema differs from the API's."""
        card = held(version, answering=True)
        item, hit = await predictor().predict_one(record.model_dump(), card, explain=(explain, explain_class))
        response.headers["X-Cache"] = "hit" if hit else "miss"
        return item

    @router.get(
        "/models/{version}/predict",
        summary="Predict one record, given as query parameters, with this version",
        response_model=prediction_type,
    )
    async def predict_with_query(
        version: Annotated[str, Path(description="Its tag (name:version) or the version alone")],
        record: Annotated[query_record, Query()],
        response: Response,
    ) -> Any:
        values, options = split_options(record)
        item, hit = await predictor().predict_one(values, held(version, answering=True), explain=options)
        response.headers["X-Cache"] = "hit" if hit else "miss"
        return item

    @router.get(
        "/models/{version}/comparison",
        summary="The challenger against the champion on live traffic (shadow predictions)",
    )
    async def comparison(
        version: Annotated[str, Path(description="The challenger's tag or version")],
    ) -> dict[str, Any]:
        """Over every worker since the server started: records compared, agreement (same label; for
        regression within 5 %), failures, the mean probability (or absolute) difference, and the last few
        disagreeing records (inputs redacted as in the payload log)."""
        import asyncio

        from tabserve.serving.observe import metrics
        from tabserve.serving.rollout import shadow

        versions = predictor().versions
        card = held(version)
        if versions.challenger is None or card.tag != versions.challenger.tag:
            raise HTTPException(
                409,
                error_body(
                    f"model version {card.tag} is not the challenger; start the server with CHALLENGER_TAG={card.tag} "
                    "to score it in the champion's shadow"
                ),
            )
        families = await asyncio.to_thread(lambda: list(metrics.every_worker("counter", "histogram")))
        return shadow.comparison(versions.champion, card, versions.path.parent, families)

    if admin_key:
        promotion_body = {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": Promotion.model_json_schema()}},
            }
        }

        @router.post(
            "/admin/promote",
            summary="Make a held version the champion, in every worker (needs ADMIN_KEY)",
            openapi_extra=promotion_body,
        )
        async def promote(request: Request) -> dict[str, Any]:
            """`Authorization: Bearer <ADMIN_KEY>` (not the API key), checked before the body is read. Every worker
            answers with the new champion within a second; the previous one stays held, so promoting it again
            ("previous") rolls back."""
            import hmac

            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), admin_key.encode()):
                raise HTTPException(
                    403,
                    error_body(
                        "promotion needs 'Authorization: Bearer <ADMIN_KEY>' with the admin key (not the API key)"
                    ),
                )
            try:
                promotion = Promotion.model_validate_json(await request.body())
            except ValidationError as exc:
                detail = pydantic_detail(exc.errors(include_context=False, include_input=False))
                raise HTTPException(
                    400, error_body('invalid body: send {"version": "<a held version>"}; ' + summarize(detail), detail)
                ) from None
            versions = predictor().versions
            previous = versions.champion.tag
            card = held(promotion.version, answering=True)
            versions.promote(card.tag)
            logger.warning(
                "model version %s promoted to champion through /v1/admin/promote (it was %s)", card.tag, previous
            )
            return {
                "champion": card.tag,
                "previous": previous,
                "message": f"{card.tag} is the champion; every worker follows within a second",
            }

    return router
