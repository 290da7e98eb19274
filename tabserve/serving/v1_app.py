"""The /v1 routes BentoML's POST-only APIs cannot express: GET with path and query parameters,
the model card, and an HTML form. Mounted into the entry service with @bentoml.asgi_app.

Predictions go through the entry service's own path (cache, then the batched model service),
which `predictor()` returns; errors use the same {"error", "detail"} body as everything else.
"""

from typing import Annotated, Any, Callable

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ValidationError

from tabserve.serving import pages
from tabserve.core.errors import ModelUnavailable, error_body, pydantic_detail, summarize
from tabserve.core.card import ModelCard, feature_dict


def create_app(card: ModelCard, record_type: type[BaseModel], prediction_type: type[BaseModel], settings: dict[str, Any],
               predictor: Callable[[], Any]) -> FastAPI:
    """`predictor()` gives an object with `async predict_one(record) -> (item, cache_hit)`."""
    # No `from __future__ import annotations` in this module: FastAPI must see the real
    # query_record class in the route signature to expand it into query parameters.
    schema = card.schema
    query_record = schema.record_model("QueryRecord", strict=False)  # query strings are text

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

    @app.exception_handler(ModelUnavailable)
    async def unavailable(request: Request, exc: ModelUnavailable) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=exc.status, headers={"Retry-After": "1"})

    @app.get("/model", summary="The model card")
    async def model_card() -> dict[str, Any]:
        return card.to_dict(serving=settings)

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
    async def predict(record: Annotated[query_record, Query()], response: Response) -> Any:
        item, hit = await predictor().predict_one(record.model_dump())
        response.headers["X-Cache"] = "hit" if hit else "miss"
        return {**item, "model": card.tag}

    @app.get("/form", response_class=HTMLResponse, summary="An HTML form for one prediction")
    async def form() -> HTMLResponse:
        return HTMLResponse(pages.form_page(card))

    form_body = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": query_record.model_json_schema()}}}}

    @app.post("/form", response_class=HTMLResponse, summary="Submit the form (application/x-www-form-urlencoded)", openapi_extra=form_body)
    async def submit(request: Request) -> HTMLResponse:
        fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        unknown = sorted(set(fields) - set(schema.names))
        cells = {name: fields.get(name, "") for name in schema.names}
        try:
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(unknown)}")
            record = record_type.model_validate(schema.parse_row(cells)).model_dump()
        except ValidationError as exc:
            messages = [f"{d['loc'][0]}: {d['msg']}" for d in pydantic_detail(exc.errors(include_context=False, include_input=False))]
            return HTMLResponse(pages.form_page(card, cells, messages), status_code=400)
        except ValueError as exc:
            return HTMLResponse(pages.form_page(card, cells, [str(exc)]), status_code=400)
        item, _ = await predictor().predict_one(record)
        return HTMLResponse(pages.result_page(card, item))

    return app
