"""The payload log's redaction rule (PAYLOAD_LOG_REDACT): a named feature's value, null included, written as
"hmac-sha256:<first 16 hex digits of HMAC-SHA256(PAYLOAD_LOG_SALT, the value as JSON)>".

Apart because the rule is used beyond the log's own lines: a challenger's recent disagreements
(tabserve/serving/rollout/shadow.py, through `redacted`) show records redacted the same way.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from hashlib import sha256
from typing import Any

HASH_PREFIX = "hmac-sha256:"
HASH_DIGITS = 16


def redaction_hash(value: Any, salt: str) -> str:
    """The value written for a redacted feature: a keyed hash of the value as JSON text."""
    text = json.dumps(value, default=_iso, ensure_ascii=False, sort_keys=True)
    return HASH_PREFIX + hmac.new(salt.encode(), text.encode(), sha256).hexdigest()[:HASH_DIGITS]


def redacted(record: dict[str, Any]) -> dict[str, Any]:
    """A record with PAYLOAD_LOG_REDACT's features as their keyed hashes, by the payload log's rule
    (shown elsewhere, e.g. in a challenger's recent disagreements); as it is when nothing is redacted."""
    from tabserve.serving import settings

    if not settings.PAYLOAD_LOG_REDACT or not settings.PAYLOAD_LOG_SALT:
        return dict(record)
    return {
        k: redaction_hash(v, settings.PAYLOAD_LOG_SALT) if k in settings.PAYLOAD_LOG_REDACT else v
        for k, v in record.items()
    }


def _iso(value: Any) -> str:
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return str(value)
