# `make bench`: the load test, then batch scoring, then the LightGBM scenario (bench/README.md). Not part of `make test`;
# takes about 45 minutes, the explained points (?explain=true) included; `make bench-explain` runs those alone
# (~9 minutes). BENCH_ARGS passes options to bench/run.py's penguins run, e.g.
# BENCH_ARGS="--servers shipped,fastapi --levels 32 --no-scoring"; BENCH_LIGHTGBM_ARGS to the LightGBM scenario's,
# e.g. BENCH_LIGHTGBM_ARGS="--rounds 1 --duration 10 --profile".
BENCH_ARGS ?=
BENCH_LIGHTGBM_ARGS ?=

.PHONY: bench bench-smoke bench-lightgbm bench-explain

bench: $(INSTALLED)  ## benchmark: batched service vs batching off vs FastAPI vs MLServer/LitServe, drift/payload log cost, by id, batch scoring -> bench/results/; then bench-lightgbm
	$(BIN)/python bench/run.py --out bench/results $(BENCH_ARGS)
	$(BIN)/python bench/run.py --scenario lightgbm --out bench/results/lightgbm $(BENCH_LIGHTGBM_ARGS)

bench-lightgbm: $(INSTALLED)  ## benchmark, LightGBM scenario alone: an imported booster (50 features, 300 trees) vs MLServer's LightGBM runtime vs FastAPI -> bench/results/lightgbm/ (~10 min)
	$(BIN)/python bench/run.py --scenario lightgbm --out bench/results/lightgbm $(BENCH_LIGHTGBM_ARGS)

bench-explain: $(INSTALLED)  ## benchmark, explanations alone: /predict and /predict_batch with and without ?explain=true, same server, same rounds; the default model, then the LightGBM scenario -> bench/results/explain/ (~9 min)
	$(BIN)/python bench/run.py --explain-only $(BENCH_ARGS)
	$(BIN)/python bench/run.py --scenario lightgbm --explain-only $(BENCH_LIGHTGBM_ARGS)

bench-smoke: $(INSTALLED)  ## the benchmark's CI mode (a few seconds per server, scoring local only), into a temp dir
	$(BIN)/python bench/run.py --smoke --out $$(mktemp -d) $(BENCH_ARGS)
