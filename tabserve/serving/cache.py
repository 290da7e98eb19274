"""An in-process LRU cache of predictions, keyed by the model tag and the validated record.

The tag is part of the key, so a new model version never answers from an old version's entries.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any


class PredictionCache:
    def __init__(self, max_size: int):
        self.max_size = max_size
        self._entries: OrderedDict[str, Any] = OrderedDict()

    @staticmethod
    def key(model_tag: str, record: dict[str, Any]) -> str:
        # Validated records hold str/float/int/bool/None and dates (as ISO text here); sorted keys
        # make equal records equal keys.
        return model_tag + "\x00" + json.dumps(record, sort_keys=True, default=str)

    def get(self, key: str) -> Any | None:
        if self.max_size <= 0 or key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: str, value: Any) -> None:
        if self.max_size <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
