"""AtomicPusher: TFX's Pusher, except that a model server never sees a version half
written.

TFX's Pusher copies the model file by file straight into <base_directory>/<version>/,
so a server polling the directory can load it mid-copy and serve half a model (a
vocabulary cut short: every user past the cut "unknown") for as long as that version
stays. This one writes the version under a hidden staging name, writes the completion
marker last (schema/push_manifest.py: every file and its size), then renames the whole
directory into place (atomic on a local file system). Our server loads only marked,
complete versions; real TF Serving sees the version appear whole. The simplest correct
design: the same inputs, outputs and blessing rule as TFX's Pusher (a subclass that
swaps the executor), so MLMD, the Resolver of the latest blessed model and every reader
of PushedModel artifacts are unchanged.
"""
from tfx import types
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2

from recsys_tfx.components import checks
from recsys_tfx.components.atomic_pusher import executor


class AtomicPusher(Pusher):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
               base_directory: str):
    """Args:
      model: the Trainer's Model.
      model_blessing: the Evaluator's ModelBlessing: only a blessed model is pushed.
      base_directory: <serving_dir>/<model name>; versions go to <base_directory>/<version>/
        (TF Serving's layout), the version being the push's Unix time.

    Raises:
      ValueError: when base_directory is empty.
    """
    checks.non_empty("AtomicPusher", "base_directory", base_directory)
    super().__init__(model=model, model_blessing=model_blessing,
                     push_destination=pusher_pb2.PushDestination(
                         filesystem=pusher_pb2.PushDestination.Filesystem(
                             base_directory=base_directory)))
