"""Server-side batching, as TF Serving's --enable_batching: concurrent Predict calls to the
same loaded version and signature, with the same input names, dtypes and inner shapes,
are merged into one model call (their inputs concatenated along dim 0) and the outputs
are split back per request.

TF Serving's knobs (BatchingParameters, read from the same batching_parameters.txt):

  max_batch_size        rows in one merged call. A request larger than this runs alone
                        (TF Serving refuses it; here --max-batch-size already bounds a
                        request, so refusing would only fail requests the server accepts)
  batch_timeout_micros  how long the oldest request of a batch waits for others
  max_enqueued_batches  batches waiting per model/version/signature/input layout; a
                        request that finds them all full gets UNAVAILABLE, TF Serving's
                        "The batch scheduling queue to which this task was submitted is
                        full"
  num_batch_threads     model calls running at once

One bad request never fails the others merged with it: each is checked (and its tensors
built) before it joins a batch, so it gets its own INVALID_ARGUMENT; and when a merged
call fails anyway (a value the model itself refuses, e.g. a string that does not parse
as a number) or answers with a dim 0 other than the rows it was given, every request of
that batch is run again alone, so each gets its own answer or its own error. Only
signatures whose every input and output has an open dim 0 are batched (callers check
PreparedPredict.rows); others run alone.
"""
import collections
import dataclasses
import logging
import threading
import time
from concurrent import futures
from typing import Deque, Dict, List, Optional, Tuple

import grpc
import tensorflow as tf

from recsys_tfx.serving import errors
from recsys_tfx.serving.metrics import Metrics
from recsys_tfx.serving.signature_runner import PreparedPredict, call_model
from recsys_tfx.serving.tf_serving_config import BatchingParameters

log = logging.getLogger(__name__)

QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


@dataclasses.dataclass
class _Batch:
  key: Tuple
  deadline: float  # monotonic time when it runs, full or not
  tasks: List[Tuple[PreparedPredict, futures.Future]] = dataclasses.field(default_factory=list)
  rows: int = 0
  closed: bool = False  # full, or a request did not fit: runs as soon as a thread is free


class Batcher:
  """Merges concurrent requests; run() blocks until the request's own outputs are ready."""

  def __init__(self, params: BatchingParameters, metrics: Optional[Metrics] = None):
    self.params = params
    self._metrics = metrics
    self._timeout = params.batch_timeout_micros / 1e6
    self._changed = threading.Condition()
    self._queues: Dict[Tuple, Deque[_Batch]] = {}  # key -> its batches, oldest first
    self._stopping = False
    self._threads: List[threading.Thread] = []
    # What the batch threads did (tests and logs read them): batches run, and requests
    # run again alone after their merged call failed.
    self.model_calls = 0
    self.rerun_alone = 0

  def start(self) -> "Batcher":
    for n in range(self.params.num_batch_threads):
      thread = threading.Thread(target=self._work, name=f"batch-{n}", daemon=True)
      thread.start()
      self._threads.append(thread)
    return self

  def stop(self) -> None:
    """Runs what is queued, then ends the threads."""
    with self._changed:
      self._stopping = True
      self._changed.notify_all()
    for thread in self._threads:
      thread.join()
    self._threads = []

  def run(self, prepared: PreparedPredict) -> Dict[str, tf.Tensor]:
    """The request's outputs, computed in a merged call where possible."""
    rows = prepared.rows
    if rows is None or rows == 0 or rows > self.params.max_batch_size:
      return call_model(prepared)
    future = futures.Future()
    key = prepared.batch_key()
    with self._changed:
      if self._stopping or not self._threads:  # nothing would run the batch
        future = None
      else:
        self._enqueue(key, prepared, rows, future)
    return call_model(prepared) if future is None else future.result()

  def _enqueue(self, key: Tuple, prepared: PreparedPredict, rows: int,
               future: futures.Future) -> None:
    """Adds the request to its key's open batch, or a new one (holding the lock)."""
    queue = self._queues.setdefault(key, collections.deque())
    batch = queue[-1] if queue else None
    if batch is None or batch.closed or batch.rows + rows > self.params.max_batch_size:
      if batch is not None:
        batch.closed = True  # it cannot grow any more: run it without waiting
      if len(queue) >= self.params.max_enqueued_batches:
        raise errors.ServingError(grpc.StatusCode.UNAVAILABLE, QUEUE_FULL)
      batch = _Batch(key, time.monotonic() + self._timeout)
      queue.append(batch)
    batch.tasks.append((prepared, future))
    batch.rows += rows
    if batch.rows >= self.params.max_batch_size:
      batch.closed = True
    self._changed.notify_all()

  # --- the batch threads -------------------------------------------------------------------

  def _next_batch(self) -> Optional[_Batch]:
    """Takes the oldest batch that is due (closed, or past its deadline); waits otherwise.
    None once stopping and nothing is left."""
    with self._changed:
      while True:
        now, due, wait = time.monotonic(), None, None
        for queue in self._queues.values():
          head = queue[0]  # only the oldest of a key can be open
          if head.closed or head.deadline <= now or self._stopping:
            if due is None or head.deadline < due.deadline:
              due = head
          else:
            wait = min(wait, head.deadline - now) if wait is not None else head.deadline - now
        if due is not None:
          queue = self._queues[due.key]
          queue.popleft()
          if not queue:
            del self._queues[due.key]
          return due
        if self._stopping:
          return None
        self._changed.wait(wait)

  def _work(self) -> None:
    while True:
      batch = self._next_batch()
      if batch is None:
        return
      try:
        self._run_batch(batch)
      except BaseException as e:  # never leave a caller waiting
        log.exception("batch of %d request(s) failed", len(batch.tasks))
        for _, future in batch.tasks:
          if not future.done():
            future.set_exception(e)

  def _run_batch(self, batch: _Batch) -> None:
    first = batch.tasks[0][0]
    if self._metrics is not None:
      self._metrics.observe_batch(first.servable.name, first.signature_name,
                                  str(first.servable.version), len(batch.tasks))
    self.model_calls += 1
    if len(batch.tasks) == 1:
      _settle(batch.tasks[0][1], lambda: call_model(first))
      return
    merged = {alias: tf.concat([prepared.inputs[alias] for prepared, _ in batch.tasks], 0)
              for alias in first.inputs}
    try:
      outputs = call_model(first, merged)
      wrong = {alias: int(t.shape[0]) for alias, t in outputs.items()
               if t.shape.rank == 0 or t.shape[0] != batch.rows}
      if wrong:
        raise ValueError(f"outputs {wrong} do not have the batch's {batch.rows} rows")
    except Exception as e:
      # Someone's input broke the merged call (or the answers cannot be split): run each
      # request alone, so only that one fails, with its own status.
      log.info("a merged call of %d requests to %s v%d %s failed (%s); running them one "
               "by one", len(batch.tasks), first.servable.name, first.servable.version,
               first.signature_name, e)
      self.rerun_alone += len(batch.tasks)
      for prepared, future in batch.tasks:
        _settle(future, lambda prepared=prepared: call_model(prepared))
      return
    start = 0
    for prepared, future in batch.tasks:
      end = start + prepared.rows
      future.set_result({alias: tensor[start:end] for alias, tensor in outputs.items()})
      start = end


def _settle(future: futures.Future, compute) -> None:
  try:
    future.set_result(compute())
  except Exception as e:
    future.set_exception(e)
