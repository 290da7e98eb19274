# `make bench`: the load test, then batch scoring (bench/README.md). Not part of `make test`; takes about 30 minutes.
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS="--servers shipped,fastapi --levels 32 --no-scoring".
BENCH_ARGS ?=

.PHONY: bench bench-smoke

bench: $(INSTALLED)  ## benchmark: batched service vs batching off vs FastAPI vs MLServer/LitServe, drift/payload log cost, by id, batch scoring -> bench/results/
	$(BIN)/python bench/run.py --out bench/results $(BENCH_ARGS)

bench-smoke: $(INSTALLED)  ## the benchmark's CI mode (a few seconds per server, scoring local only), into a temp dir
	$(BIN)/python bench/run.py --smoke --out $$(mktemp -d) $(BENCH_ARGS)
