"""A pipeline step the shadow tests put in front of a challenger's pipeline, pickled by reference: the
server's model worker imports it from here (the server runs in the project folder).

`hold(X)` waits until the file named by TABSERVE_TEST_SHADOW_GATE exists (at most 60 s), then raises if it
says "raise" and passes X through otherwise: the test decides when the challenger answers, and whether it fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def hold(frame):
    gate = Path(os.environ["TABSERVE_TEST_SHADOW_GATE"])
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if gate.exists() and gate.read_text().strip() == "raise":
        raise RuntimeError("the challenger was made to fail by the test")
    return frame
