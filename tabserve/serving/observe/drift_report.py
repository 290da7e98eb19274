"""The offline drift report: the payload log (PAYLOAD_LOG=1) against the model's training reference, as one
self-contained HTML file.

    python -m tabserve.serving.observe.drift_report --log payload_log --out report.html
    python -m tabserve.serving.observe.drift_report --log payload_log --model penguins:20250131_abc --out report.html

Reads every JSON line of the files under --log (its `schema/` folders aside: they describe the columns),
keeps the lines of one model (--model, a tag or a name; without it, the one model the log holds: a log
with several refuses and lists them), loads that model's card from the BentoML store (BENTOML_HOME) and
compares the logged inputs and predictions with its reference profile using tabserve/core/profile.py, the
code behind GET /v1/drift: the same records give the same shares, PSI and statuses (thresholds from
DRIFT_WARN_PSI, DRIFT_ALERT_PSI, DRIFT_MIN_RECORDS, or --min-records). The page: the model, records, time
span and overall status; per feature, worst first, a bar chart of the reference and live share of every
bin with its PSI and status; the predictions likewise (template:
tabserve/serving/observe/templates/drift_report.html). Plots are matplotlib PNGs inside the page (data
URIs): no scripts, no external files. Features redacted in the log (PAYLOAD_LOG_REDACT) hold hashes, not
values: they are left out, and the page says so.

An operator's tool, run from the work tree: it needs matplotlib, a dev dependency (not in the Bento).
Problems print one line (`error: ...`) and exit with code 2: no log, no lines for the model, a model not in
the store or without a reference, no readable line. Unreadable lines are counted, skipped and named in a
warning.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tabserve.core import plots, profile
from tabserve.core.cli import OneLineParser, fail

TEMPLATES = Path(__file__).resolve().parent / "templates"  # drift_report.html
SEVERITY_ORDER = {profile.ALERT: 0, profile.WARN: 1, profile.OK: 2, profile.TOO_FEW: 3}


class ReportError(Exception):
    """A one-line reason the report cannot be made."""


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m tabserve.serving.observe.drift_report",
        description="Compare the payload log (PAYLOAD_LOG=1) with the model's training data: one HTML file.",
    )
    parser.add_argument("--log", required=True, help="the payload log directory (PAYLOAD_LOG_DIR)")
    parser.add_argument("--model", help="the model's tag or name (default: the one model the log holds)")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--min-records", type=int, help="fewer records read as 'too few' (default: DRIFT_MIN_RECORDS)")
    return parser


# --- reading the log ---------------------------------------------------------------------------------


@dataclasses.dataclass
class LogLines:
    lines: list[dict[str, Any]]
    bad: int
    files: int


def read_log(directory: Path) -> LogLines:
    """Every JSON line of every file under `directory` (schema files aside)."""
    if not directory.is_dir():
        raise ReportError(
            f"{directory}: no such directory (the payload log is written with PAYLOAD_LOG=1 into PAYLOAD_LOG_DIR)"
        )
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and "schema" not in p.relative_to(directory).parts[:-1]
    )
    lines: list[dict[str, Any]] = []
    bad = 0
    for path in files:
        try:
            handle = open(path, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ReportError(f"{path}: {exc.strerror}") from None
        with handle:
            for text in handle:
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                except ValueError:
                    bad += 1
                    continue
                if (
                    isinstance(line, dict)
                    and isinstance(line.get("inputs"), dict)
                    and "prediction" in line
                    and line.get("model")
                ):
                    lines.append(line)
                else:
                    bad += 1
    if not lines and not bad:
        raise ReportError(
            f"{directory}: no payload log lines in it "
            "(is it PAYLOAD_LOG_DIR, and did the server predict with PAYLOAD_LOG=1?)"
        )
    if not lines:
        raise ReportError(f"{directory}: none of its {bad} lines is a payload log record")
    return LogLines(lines, bad, len(files))


def pick_model(lines: list[dict[str, Any]], wanted: str | None) -> str:
    """The tag whose lines to compare: `wanted` (a tag, or a name that one tag of the log has), or the only one."""
    tags = Counter(line["model"] for line in lines)
    listing = ", ".join(f"{tag} ({n} lines)" for tag, n in tags.most_common())
    if wanted is None:
        if len(tags) > 1:
            raise ReportError(f"the log holds {len(tags)} models: {listing}; pick one with --model")
        return next(iter(tags))
    if wanted in tags:
        return wanted
    name, _, version = wanted.partition(":")
    named = [tag for tag in tags if tag.split(":")[0] == name] if version in ("", "latest") else []
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ReportError(f"the log holds several versions of {name}: {listing}; pick one with --model {name}:VERSION")
    raise ReportError(f"no lines for model {wanted} in the log (it has: {listing})")


def load_card(tag: str) -> Any:
    import bentoml

    from tabserve.core.card import ModelCard

    try:
        model = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        home = os.environ.get("BENTOML_HOME") or "~/bentoml"
        raise ReportError(
            f"model {tag} is not in the BentoML model store (BENTOML_HOME={home}); "
            "run the report where the model was trained, or with that store's BENTOML_HOME"
        ) from None
    except bentoml.exceptions.BentoMLException as exc:
        raise ReportError(f"model {tag}: {' '.join(str(exc).split())}") from None
    card = ModelCard.from_model(model)
    if card.reference is None:
        raise ReportError(
            f"model {tag} has no drift reference: it was trained before train.py kept one; train it again to compare"
        )
    return card


# --- comparing -----------------------------------------------------------------------------------------


def build(log: LogLines, tag: str, card: Any, thresholds: profile.Thresholds) -> dict[str, Any]:
    """What the page shows: the comparison (as /v1/drift computes it), worst first, with the log's facts."""
    lines = [line for line in log.lines if line["model"] == tag]
    redacted = sorted({name for line in lines for name in (line.get("redacted") or [])})
    reference = card.reference
    compared_reference = dataclasses.replace(
        reference, features={k: v for k, v in reference.features.items() if k not in redacted}
    )
    counts = compared_reference.count([line["inputs"] for line in lines], [line["prediction"] for line in lines])
    compared = profile.compare(compared_reference, counts, thresholds, card.schema)
    profiled = [f for f in compared["features"] if "psi" in f]
    profiled.sort(key=lambda f: (SEVERITY_ORDER.get(f["status"], 9), -f["psi"]))
    times = sorted(line["timestamp"] for line in lines if line.get("timestamp"))
    routes = Counter(line.get("route") or "(not in a request)" for line in lines)
    return {
        "model": tag,
        "status": compared["status"],
        "records": compared["records"],
        "lines": len(lines),
        "first": times[0] if times else None,
        "last": times[-1] if times else None,
        "features": profiled,
        "not_profiled": [f for f in compared["features"] if f["status"] == profile.NOT_PROFILED],
        "redacted": [name for name in card.schema.names if name in redacted],
        "prediction": compared["prediction"],
        "thresholds": thresholds,
        "routes": routes.most_common(),
        "bad_lines": log.bad,
        "files": log.files,
        "other_models": sorted({line["model"] for line in log.lines} - {tag}),
        "reference_rows": reference.rows,
        "prediction_rows": reference.prediction_rows,
    }


# --- the page ------------------------------------------------------------------------------------------


def bar_chart(bins: list[dict[str, Any]], title: str) -> str:
    """Reference and live shares per bin, side by side, as a PNG data URI."""
    import numpy as np

    labels = [b["bin"] for b in bins]
    x = np.arange(len(labels))
    with plots.subplots(figsize=(max(4.8, 0.62 * len(labels) + 1.6), 2.6), dpi=100) as (fig, ax):
        ax.bar(x - 0.2, [b["reference"] for b in bins], 0.4, label="training (reference)", color="#9aa5b1")
        ax.bar(x + 0.2, [b["live"] for b in bins], 0.4, label="live (payload log)", color="#3b7dd8")
        ax.set_xticks(
            x, labels, rotation=30 if len(labels) > 5 else 0, ha="right" if len(labels) > 5 else "center", fontsize=8
        )
        ax.set_ylabel("share", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(title, fontsize=9, loc="left")
        ax.legend(fontsize=7, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        return plots.png_data_uri(fig)


def render(report: dict[str, Any]) -> str:
    from tabserve.core import html

    environment = html.environment(TEMPLATES)  # escaped: every name and label comes from the log
    for feature in report["features"]:
        feature["chart"] = bar_chart(
            feature["bins"], f"{feature['name']}: PSI {feature['psi']:g} ({feature['status']})"
        )
    if report["prediction"] is not None:
        p = report["prediction"]
        p["chart"] = bar_chart(p["bins"], f"prediction: PSI {p['psi']:g} ({p['status']})")
    return environment.get_template("drift_report.html").render(
        title=f"Drift report: {report['model']}",
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **report,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from tabserve.serving import settings

        log = read_log(Path(args.log))
        if log.bad:
            print(
                f"warning: skipped {log.bad} unreadable line{'s' if log.bad != 1 else ''} under {args.log}",
                file=sys.stderr,
            )
        tag = pick_model(log.lines, args.model)
        card = load_card(tag)
        minimum = args.min_records if args.min_records is not None else settings.DRIFT_MIN_RECORDS
        if minimum < 1:
            raise ReportError(f"--min-records {minimum}: must be at least 1")
        thresholds = profile.Thresholds(
            warn=settings.DRIFT_WARN_PSI, alert=settings.DRIFT_ALERT_PSI, min_records=minimum
        )
        report = build(log, tag, card, thresholds)
        try:
            page = render(report)
        except ImportError as exc:
            raise ReportError(
                f"the report needs {exc.name} (a dev dependency: `make` installs it into .venv)"
            ) from None
        out = Path(args.out)
        try:
            out.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"{out}: {exc.strerror}") from None
    except ReportError as exc:
        return fail(str(exc))
    drifted = [f["name"] for f in report["features"] if f["status"] in (profile.WARN, profile.ALERT)]
    print(
        f"wrote {out}: {tag}, {report['records']} records, {report['first'] or '?'} to {report['last'] or '?'}, "
        f"status {report['status']}" + (f" (drift in {', '.join(drifted)})" if drifted else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
