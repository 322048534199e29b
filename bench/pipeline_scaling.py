"""Pipeline scaling: wall time and peak memory of the whole TFX pipeline and of each stage
(`recsys run`: LocalDagRunner, Beam DirectRunner, MLMD on SQLite) at several sizes of the
synthetic world.

    python bench/pipeline_scaling.py [--sizes 100000,1000000,5000000] [--quick]
                                     [--out /tmp/scale] [--json out.json [--resume]]
                                     [--max-gib 20]

Each size runs `recsys run --config configs/demo.yaml` (with `ranking: {epochs: 1}` and
`--epochs 1`, so both trainers do a fixed amount of work per example) as a subprocess in a
fresh <out>/<N>/pipeline (and <out>/<N>/serving), its output in <out>/<N>/run.log.
  stage time   the "<- X finished in Ns" lines of pipeline/progress.py; "prepare" is the
               time before the first component starts (generate, validate and write the
               data), "summary, exit" the time after the last one, "total" the whole
               subprocess.
  peak memory  the most RSS of the process and all its children (Beam's worker processes)
               summed, sampled every 0.5 s; each sample counts for the stage running then.
               Components run in one process that does not always hand freed memory
               back, so a stage's peak can include what an earlier stage left.
  exponent     log(t2/t1) / log(n2/n1) between consecutive sizes: 1.0 is linear, and
               10**exponent the time ratio per 10x data. Stages under a few seconds are
               mostly fixed cost, and their exponents noise.
--resume keeps the runs already in --json (sizes it holds are not run again), so sizes
can be added one at a time, e.g. 5M after looking at 1M.
The machine's load (os.getloadavg) is recorded with each run: other jobs inflate wall time.

Targets (a 2-core machine): no stage worse than linear; 5M interactions end to end in
under 60 minutes and under 12 GiB peak memory.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List

import psutil
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1024 ** 3
TARGET_SECONDS = 3600.0
TARGET_PEAK_GIB = 12.0
TARGET_AT = 5_000_000
SHORT_STAGE_S = 5.0  # below this (at the larger size) an exponent is not meaningful
_STARTED = re.compile(r"-> (\S+) started")
_FINISHED = re.compile(r"<- (\S+) finished in ([\d.]+)s")
PREPARE, BETWEEN, AFTER = "prepare", "(between stages)", "summary, exit"


def write_config(out: str) -> str:
  """configs/demo.yaml with one ranking epoch (the two-tower's comes from --epochs 1)."""
  with open(os.path.join(REPO, "configs", "demo.yaml")) as f:
    config = yaml.safe_load(f)
  config.setdefault("ranking", {})["epochs"] = 1
  path = os.path.join(out, "config.yaml")
  with open(path, "w") as f:
    yaml.safe_dump(config, f)
  return path


def tree_rss(process: psutil.Process) -> int:
  total = 0
  try:
    members = [process] + process.children(recursive=True)
  except psutil.NoSuchProcess:
    return 0
  for member in members:
    try:
      total += member.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
      pass
  return total


def kill_tree(process: psutil.Process) -> None:
  for member in process.children(recursive=True) + [process]:
    try:
      member.kill()
    except psutil.NoSuchProcess:
      pass


def run_size(n: int, out: str, config_path: str, max_gib: float) -> Dict[str, object]:
  """One pipeline run at n interactions: seconds and peak GiB per stage, load averages.
  A run whose memory passes max_gib is killed (before the machine starts to thrash) and
  reported with the stage it was in."""
  root = os.path.join(out, str(n))
  shutil.rmtree(root, ignore_errors=True)
  os.makedirs(root)
  recsys = os.path.join(os.path.dirname(sys.executable), "recsys")
  command = [recsys, "run", "--config", config_path, "--synthetic-interactions", str(n),
             "--epochs", "1", "--pipeline-root", os.path.join(root, "pipeline"),
             "--serving-dir", os.path.join(root, "serving")]
  log_path = os.path.join(root, "run.log")
  seconds: Dict[str, float] = {}
  peak: Dict[str, int] = {}
  state = {"stage": PREPARE, "last_finish": None}
  start = time.monotonic()

  def read_lines(stream, log):
    for line in stream:
      log.write(line)
      log.flush()
      started, finished = _STARTED.search(line), _FINISHED.search(line)
      if started:
        if state["stage"] == PREPARE:
          seconds[PREPARE] = time.monotonic() - start
        state["stage"] = started.group(1)
      elif finished:
        seconds[finished.group(1)] = float(finished.group(2))
        state["stage"], state["last_finish"] = BETWEEN, time.monotonic()

  loads = [os.getloadavg()]
  with open(log_path, "w") as log:
    log.write(" ".join(command) + "\n")
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    reader = threading.Thread(target=read_lines, args=(process.stdout, log), daemon=True)
    reader.start()
    watched = psutil.Process(process.pid)
    last_load = time.monotonic()
    while process.poll() is None:
      rss, stage = tree_rss(watched), state["stage"]
      peak[stage] = max(peak.get(stage, 0), rss)
      peak["total"] = max(peak.get("total", 0), rss)
      if rss > max_gib * GIB:
        kill_tree(watched)
        process.wait()
        sys.exit(f"error: the pipeline at {n:,} interactions passed --max-gib {max_gib:g} "
                 f"({rss / GIB:.1f} GiB) in {stage} after {time.monotonic() - start:.0f}s and "
                 f"was stopped; peaks so far: "
                 + ", ".join(f"{k} {v / GIB:.2f}" for k, v in peak.items()) + f"; log {log_path}")
      if time.monotonic() - last_load > 10:
        loads.append(os.getloadavg())
        last_load = time.monotonic()
      time.sleep(0.5)
    reader.join(timeout=10)
  seconds["total"] = time.monotonic() - start
  if state["last_finish"] is not None:
    seconds[AFTER] = start + seconds["total"] - state["last_finish"]
  loads.append(os.getloadavg())
  if process.returncode != 0:
    sys.exit(f"error: the pipeline at {n:,} interactions failed (rc {process.returncode}); "
             f"its log: {log_path}")
  return {"n": n, "seconds": seconds, "peak_gib": {k: v / GIB for k, v in peak.items()},
          "load_1min_mean": sum(l[0] for l in loads) / len(loads),
          "load_1min_max": max(l[0] for l in loads), "log": log_path}


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
  return math.log(t2 / t1) / math.log(n2 / n1) if t1 > 0 and t2 > 0 else float("nan")


def affine(v1: float, v2: float, n1: int, n2: int, n: int = TARGET_AT) -> float:
  """v at n on the line through (n1, v1) and (n2, v2): a fixed part plus one per row."""
  return v2 + (v2 - v1) / (n2 - n1) * (n - n2)


def stage_order(runs: List[dict]) -> List[str]:
  names = [PREPARE]
  for run in runs:
    names += [s for s in run["seconds"] if s not in names and s not in ("total", AFTER)]
  return names + [BETWEEN, AFTER, "total"]


def report(runs: List[dict]) -> str:
  stages = stage_order(runs)
  pairs = list(zip(runs, runs[1:]))
  header = f"{'stage':<24}" + "".join(f"{run['n']:>12,} n: s / GiB   " for run in runs)
  header += "".join(f"  {'exp ' + str(a['n'] // 1000) + 'K->' + str(b['n'] // 1000) + 'K (x per 10x)':<30}"
                    for a, b in pairs)
  lines = [header, "-" * len(header)]
  for stage in stages:
    row = f"{stage:<24}"
    for run in runs:
      t, m = run["seconds"].get(stage), run["peak_gib"].get(stage)
      row += f"{t:>12.1f} s" if t is not None else f"{'-':>14}"
      row += f" {m:6.2f} GiB   " if m is not None else f"{'':13}"
    for a, b in pairs:
      t1, t2 = a["seconds"].get(stage), b["seconds"].get(stage)
      if t1 is None or t2 is None:
        row += f"  {'-':<30}"
        continue
      e = exponent(t1, t2, a["n"], b["n"])
      flag = "  (short)" if t2 < SHORT_STAGE_S else ("  SUPERLINEAR" if e > 1.0 else "")
      row += f"  {e:>6.2f} (x{10 ** e:5.1f}){flag:<13}"
    lines.append(row)
  lines.append("")
  lines += [f"{run['n']:>10,}: load avg (1 min) mean {run['load_1min_mean']:.2f}, max "
            f"{run['load_1min_max']:.2f} on {os.cpu_count()} CPUs; log {run['log']}"
            for run in runs]
  return "\n".join(lines)


def targets(runs: List[dict]) -> List[str]:
  lines = []
  for a, b in zip(runs, runs[1:]):
    slow = [s for s in a["seconds"] if s in b["seconds"] and b["seconds"][s] >= SHORT_STAGE_S
            and exponent(a["seconds"][s], b["seconds"][s], a["n"], b["n"]) > 1.0]
    lines.append(f"no stage worse than linear, {a['n']:,} -> {b['n']:,}: "
                 f"{'met' if not slow else 'NOT met: ' + ', '.join(slow)}")
  big = [run for run in runs if run["n"] >= TARGET_AT]
  if big:
    run = big[0]
    t, m = run["seconds"]["total"], run["peak_gib"]["total"]
    lines.append(f"{run['n']:,} end to end {t / 60:.1f} min (< 60): "
                 f"{'met' if t < TARGET_SECONDS else 'NOT met'}; peak {m:.2f} GiB (< 12): "
                 f"{'met' if m < TARGET_PEAK_GIB else 'NOT met'}")
  elif len(runs) >= 2:
    a, b = runs[-2], runs[-1]
    lines.append(f"{TARGET_AT:,} not run; extrapolated from {a['n']:,} and {b['n']:,} as a "
                 f"fixed cost plus a cost per interaction (the exponents above understate "
                 f"growth while fixed costs dominate):")
    for stage in stage_order(runs):
      if stage in a["seconds"] and stage in b["seconds"] and b["seconds"][stage] >= SHORT_STAGE_S:
        t = affine(a["seconds"][stage], b["seconds"][stage], a["n"], b["n"])
        m = affine(a["peak_gib"].get(stage, 0), b["peak_gib"].get(stage, 0), a["n"], b["n"])
        lines.append(f"  {stage:<24} {t:7.0f} s  {m:6.1f} GiB")
    t = affine(a["seconds"]["total"], b["seconds"]["total"], a["n"], b["n"])
    m = affine(a["peak_gib"]["total"], b["peak_gib"]["total"], a["n"], b["n"])
    lines.append(f"  end to end {t / 60:.0f} min (< 60): {'met' if t < TARGET_SECONDS else 'NOT met'}"
                 f"; peak {m:.1f} GiB (< 12): {'met' if m < TARGET_PEAK_GIB else 'NOT met'}")
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="100000,1000000,5000000",
                      help="synthetic interactions per run, comma-separated")
  parser.add_argument("--quick", action="store_true", help="sizes 20000,100000")
  parser.add_argument("--out", default="/tmp/scale", help="pipeline roots and logs go here")
  parser.add_argument("--json", help="also write the runs here")
  parser.add_argument("--max-gib", type=float, default=20.0,
                      help="stop a run whose memory passes this many GiB (default 20)")
  parser.add_argument("--resume", action="store_true",
                      help="keep the runs already in --json and run only the other sizes")
  args = parser.parse_args(argv)
  sizes = [20_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
  os.makedirs(args.out, exist_ok=True)
  config_path = write_config(args.out)
  runs = []
  if args.resume and args.json and os.path.exists(args.json):
    with open(args.json) as f:
      runs = [run for run in json.load(f) if run["n"] in sizes]
  for n in [n for n in sizes if n not in {run["n"] for run in runs}]:
    print(f"{n:,} interactions ... (load avg {os.getloadavg()[0]:.2f})", flush=True)
    run = run_size(n, args.out, config_path, args.max_gib)
    print(f"  total {run['seconds']['total']:.0f}s, peak {run['peak_gib']['total']:.2f} GiB, "
          f"load avg mean {run['load_1min_mean']:.2f}", flush=True)
    runs.append(run)
    runs.sort(key=lambda run: run["n"])
    if args.json:  # after every size, so a long run that is stopped still leaves results
      with open(args.json, "w") as f:
        json.dump(runs, f, indent=1)
  print("\n" + report(runs) + "\n")
  print("\n".join(targets(runs)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
