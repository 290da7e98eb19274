"""The prediction cache: LRU eviction, and keys that never cross model versions."""

from tabserve.serving.cache import PredictionCache

RECORD = {"island": "Dream", "year": 2008.0, "sex": None}


def test_hit_after_put_and_equal_records_share_a_key():
    cache = PredictionCache(10)
    cache.put(PredictionCache.key("m:1", RECORD), {"prediction": "Adelie"})
    reordered = {"sex": None, "year": 2008.0, "island": "Dream"}
    assert cache.get(PredictionCache.key("m:1", reordered)) == {"prediction": "Adelie"}


def test_a_new_model_version_never_reads_old_entries():
    cache = PredictionCache(10)
    cache.put(PredictionCache.key("penguins:v1", RECORD), {"prediction": "Adelie"})
    assert cache.get(PredictionCache.key("penguins:v2", RECORD)) is None


def test_least_recently_used_entry_is_evicted():
    cache = PredictionCache(2)
    keys = [PredictionCache.key("m:1", {**RECORD, "year": y}) for y in (1.0, 2.0, 3.0)]
    cache.put(keys[0], 0)
    cache.put(keys[1], 1)
    assert cache.get(keys[0]) == 0  # now keys[1] is the least recently used
    cache.put(keys[2], 2)
    assert cache.get(keys[1]) is None and cache.get(keys[0]) == 0 and cache.get(keys[2]) == 2 and len(cache) == 2


def test_size_zero_disables_the_cache():
    cache = PredictionCache(0)
    cache.put("k", 1)
    assert cache.get("k") is None and len(cache) == 0
