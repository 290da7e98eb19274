"""The infer request's body decoded: JSON, or a JSON header then binary tensor data (Triton's binary
tensor extension, which tritonclient sends by default), as an InferenceRequest whose inputs hold their data.

Apart because it is about bytes on the wire (Inference-Header-Content-Length, little-endian arrays,
length-prefixed BYTES, UTF-8 and base64 text), not about what the values mean for the model.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
from pydantic import ValidationError

from tabserve.core.errors import DuplicateKey, pydantic_detail, refuse_duplicate_keys, summarize
from tabserve.serving.api.oip.messages import InferenceRequest, OipError

# numpy dtypes of the datatypes binary tensor data may carry (little-endian, row-major).
BINARY_DTYPES = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def parse_request(body: bytes, header_length: str | None) -> InferenceRequest:
    """The request body (JSON, or a JSON header then binary tensor data) as an InferenceRequest."""
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise OipError(
                400,
                f"invalid input: Inference-Header-Content-Length {header_length!r} "
                f"is not a length within the {len(body)}-byte body",
            )
        size = int(header_length)
        header, raw = body[:size], body[size:]
    else:
        header, raw = body, b""
    if not header.strip():
        raise OipError(400, "invalid input: the request body is empty; send an inference request (JSON)")
    try:
        parsed = json.loads(header, object_pairs_hook=refuse_duplicate_keys)
    except DuplicateKey as exc:
        raise OipError(400, f"invalid input: the key {str(exc)!r} appears twice in one JSON object") from None
    except (ValueError, RecursionError) as exc:
        raise OipError(400, f"invalid input: the body is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise OipError(400, "invalid input: the body must be a JSON object (an inference request)")
    try:
        request = InferenceRequest.model_validate(parsed)
    except ValidationError as exc:
        detail = pydantic_detail(exc.errors(include_context=False, include_input=False))
        raise OipError(400, summarize(detail), detail) from None
    _attach_binary(request, raw)
    return request


def _attach_binary(request: InferenceRequest, raw: bytes) -> None:
    """Binary tensor data (Triton's extension): each input with `binary_data_size` takes its bytes, in order."""
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise OipError(
                400, f"invalid input: input {tensor.name!r}: binary_data_size must be a whole number of bytes"
            )
        if tensor.data is not None:
            raise OipError(400, f"invalid input: input {tensor.name!r} has both data and binary_data_size")
        chunk = raw[offset : offset + size]
        if len(chunk) < size:
            raise OipError(
                400, f"invalid input: input {tensor.name!r}: binary_data_size {size} runs past the end of the body"
            )
        offset += size
        tensor.data = _decode_binary(tensor.name, tensor.datatype, chunk)
    if offset != len(raw):
        raise OipError(
            400, f"invalid input: {len(raw) - offset} bytes of binary data after the JSON header belong to no input"
        )


def _decode_binary(name: str, datatype: str, chunk: bytes) -> list[Any]:
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then the bytes
        values, offset = [], 0
        while offset < len(chunk):
            if offset + 4 > len(chunk):
                raise OipError(400, f"invalid input: input {name!r}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", chunk, offset)
            offset += 4
            if offset + length > len(chunk):
                raise OipError(400, f"invalid input: input {name!r}: truncated BYTES element")
            values.append(decode_text(name, chunk[offset : offset + length]))
            offset += length
        return values
    dtype = BINARY_DTYPES.get(datatype)
    if dtype is None:
        raise OipError(
            400,
            f"invalid input: input {name!r}: datatype {datatype!r} "
            f"is not one of {', '.join(['BYTES', *BINARY_DTYPES])}",
        )
    if len(chunk) % np.dtype(dtype).itemsize:
        raise OipError(
            400, f"invalid input: input {name!r}: {len(chunk)} bytes is not a whole number of {datatype} values"
        )
    return np.frombuffer(chunk, dtype=dtype).tolist()


def decode_text(name: str, raw: bytes) -> str:
    """A BYTES value as text (input `name`'s, for the error)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OipError(400, f"invalid input: input {name!r}: a BYTES value is not UTF-8 text") from None


def decode_base64(name: str, text: str) -> bytes:
    """A BYTES value sent as base64 text (`content_type: base64`), as its bytes."""
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise OipError(
            400, f"invalid input: input {name!r}: a value is not base64 (its content_type says base64)"
        ) from None
