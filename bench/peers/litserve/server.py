"""LitServe serving the project's fitted pipeline: POST /predict with one record answers the project's
/predict shape, {"prediction": ..., "probabilities": {...}}; POST /predict with {"records": [...]} answers
{"predictions": [...]} (the bulk level).

LitServe's batching (`LitAPI(max_batch_size=..., batch_timeout=...)`) collects requests in each inference
worker; `batch` puts the records of every request in the batch (1 or 1,000 each) into one frame, so a batch
is one predict_proba, and `unbatch` gives each request its rows back. Started by bench/run.py as

    <venv>/bin/python bench/peers/litserve/server.py --pipeline .../pipeline.joblib --port N --workers 1 --api-servers 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import litserve as ls

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import FittedPipeline  # noqa: E402 - bench/peers/common.py


class PipelineAPI(ls.LitAPI):
    def __init__(self, pipeline_path: str, **kwargs):
        super().__init__(**kwargs)
        self.pipeline_path = pipeline_path

    def setup(self, device):  # noqa: ARG002 - CPU only
        self.fitted = FittedPipeline(self.pipeline_path)

    def decode_request(self, request):
        """(records, bulk?): a body with "records" is a bulk request, any other body one record."""
        if isinstance(request, dict) and "records" in request:
            return request["records"], True
        return [request], False

    def batch(self, inputs):
        return inputs  # the decoded requests; predict makes one frame of all their records

    def predict(self, inputs):
        batched = isinstance(inputs, list)  # max_batch_size > 1: a list of decoded requests
        requests = inputs if batched else [inputs]
        records = [record for recs, _ in requests for record in recs]
        answers = self.fitted.answers(self.fitted.frame_of_records(records))
        out, start = [], 0
        for recs, bulk in requests:
            part = answers[start : start + len(recs)]
            start += len(recs)
            out.append({"predictions": part} if bulk else part[0])
        return out if batched else out[0]

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True, help="the model version's pipeline.joblib")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="inference workers (workers_per_device on the CPU)")
    parser.add_argument(
        "--api-servers", type=int, default=2, help="HTTP server processes (LitServe's default: one per worker)"
    )
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.01, help="seconds")
    parser.add_argument("--fast-queue", type=int, default=1, choices=(0, 1), help="ZeroMQ between the processes")
    args = parser.parse_args()
    api = PipelineAPI(args.pipeline, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers, fast_queue=bool(args.fast_queue))
    server.run(
        host=args.host,
        port=args.port,
        num_api_servers=args.api_servers,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
