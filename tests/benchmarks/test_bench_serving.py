"""bench/serving.py's verdicts: the one-Predict recommender's targets are judged from the
rows it measured (p99 at N=8, throughput against the two-call funnel at N=8 and 32)."""
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "bench_serving", os.path.join(REPO, "bench", "serving.py"))
bench = importlib.util.module_from_spec(_spec)  # a script, not an installed module
_spec.loader.exec_module(bench)


def _row(scenario, clients, p99_ms, rps):
  return {"scenario": scenario, "clients": clients, "requests": 100, "p50_ms": p99_ms / 2,
          "p99_ms": p99_ms, "mean_ms": p99_ms / 2, "rps": rps}


def test_one_call_targets_are_judged_from_the_rows():
  rows = [_row(bench.RECOMMEND, 8, 40.0, 250), _row(bench.ONE_CALL, 8, 18.0, 600),
          _row(bench.RECOMMEND, 32, 90.0, 260), _row(bench.ONE_CALL, 32, 60.0, 400)]
  text = bench.report(rows)
  assert f"target {bench.ONE_CALL} p99 <= 20 ms at N=8: 18.0 ms, met" in text
  assert f"target {bench.RECOMMEND} p99 <= 20 ms at N=8: 40.0 ms, MISSED by 20.0 ms" in text
  assert "at N=8: 600 vs 250 req/s = 2.40x, met" in text
  assert "at N=32: 400 vs 260 req/s = 1.54x, MISSED (0.77 of the target)" in text


def test_without_a_recommender_no_one_call_verdict():
  text = bench.report([_row(bench.RECOMMEND, 8, 15.0, 300)])
  assert "met" in text and bench.ONE_CALL not in text
