"""TimeSplitExampleGen: an ExampleGen that splits by time, per user, so a user's later
interactions never train a model that is scored on their earlier ones.

Input: a canonical data directory (interactions.csv, items.csv, optional users.csv;
schema/canonical.py). Output: Examples with the splits train / eval / test
(schema/time_split.py says which interaction goes where, and how ties are broken), each
example joined with its item's and user's features and carrying the slice features; with
`history_length` > 0 (a retrieval model that reads history), also the ids of the user's
previous `history_length` items, oldest first — so a held-out example's history holds
what came before it and never itself.
"""
import dataclasses

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from recsys_tfx.components.time_split_example_gen import executor
from recsys_tfx.components.time_split_example_gen.options import Options
from recsys_tfx.schema.time_split import MIN_INTERACTIONS_TO_HOLD_OUT, SPLITS

INTERACTIONS_FILE = "interactions.csv"


class TimeSplitExampleGen(FileBasedExampleGen):
  """FileBasedExampleGen whose executor splits each user's history by time."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, input_base: str, schema_file: str, seed: int = 0,
               min_interactions_to_hold_out: int = MIN_INTERACTIONS_TO_HOLD_OUT,
               history_length: int = 0, code_version: str = "", span_pattern: str = "",
               window_spans: int = 1, skip_bad_spans: bool = False, spans=()):
    """Args:
      input_base: the canonical data directory (a local path or a bucket URI).
      schema_file: the curated schema.pbtxt the examples are typed by.
      seed: seeds the tie-break between equal timestamps.
      min_interactions_to_hold_out: users with fewer interactions stay wholly in train.
      history_length: > 0 writes each example's `history` of that many earlier items.
      code_version: a fingerprint of the project's code (pipeline/run_state.py); part of
        TFX's cache key only.
      span_pattern, window_spans, skip_bad_spans: the dated spans the input is read from
        (components/ingest/spans.py), when it is; spans: [(number, path), ...] it holds,
        when resolved before the run (a local run). Without them the component resolves
        the pattern when it runs and writes the window's canonical copy to input_base
        (components/time_split_example_gen/spans_input.py: a Kubeflow run). Recorded on
        the Examples artifact: span (the newest), spans ("3,4,5") and span_paths.

    Raises:
      ValueError: naming the argument that is out of range.
    """
    options = Options(schema_file, seed, min_interactions_to_hold_out, history_length,
                      code_version, span_pattern, window_spans, skip_bad_spans,
                      tuple((int(number), str(path)) for number, path in spans))
    super().__init__(input_base=input_base, input_config=input_config(),
                     output_config=output_config(), custom_config=dataclasses.asdict(options))


def output_config() -> example_gen_pb2.Output:
  """Names the three splits; the executor decides membership, so buckets are unused."""
  return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
      example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=1) for name in SPLITS]))


def input_config() -> example_gen_pb2.Input:
  return example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name="interactions", pattern=INTERACTIONS_FILE)])
