"""RecommenderComposer's executor: composes the live retrieval and ranking versions into
a new `recommender` version, unless the latest one already composes them."""
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from recsys_tfx.components.atomic_pusher.executor import push_version
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.trainer import funnel_export


def latest_version(model_dir: str) -> Optional[Tuple[int, str]]:
  """(version, path) of the newest version directory (a name of digits), or None."""
  if not tf.io.gfile.isdir(model_dir):
    return None
  versions = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(model_dir)
              if name.rstrip("/").isdigit()]
  if not versions:
    return None
  version = max(versions)
  return version, os.path.join(model_dir, str(version))


def _composed(version_dir: str) -> Dict[str, Any]:
  path = os.path.join(version_dir, contract.COMPOSITION_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def compose(serving_dir: str, data_dir: str, work_dir: str) -> Dict[str, Any]:
  """Writes <serving_dir>/recommender/<version>/ from what is live (built in work_dir,
  then pushed as the AtomicPusher pushes: never half-visible); returns what it did:
  {"pushed": 0/1, "version", "destination", "composition", "why"}."""
  retrieval = latest_version(os.path.join(serving_dir, contract.RETRIEVAL_MODEL))
  if retrieval is None:
    return {"pushed": 0, "why": "no retrieval model is served"}
  ranking = latest_version(os.path.join(serving_dir, contract.RANKING_MODEL))
  base = os.path.join(serving_dir, contract.RECOMMENDER_MODEL)
  previous = latest_version(base)
  wanted = {"retrieval_version": retrieval[0],
            "ranking_version": ranking[0] if ranking else -1}
  if previous is not None:
    had = _composed(previous[1])
    if all(had.get(k) == v for k, v in wanted.items()):
      return {"pushed": 0, "why": f"recommender v{previous[0]} already composes retrieval "
              f"v{retrieval[0]} and ranking v{wanted['ranking_version']}"}
  if tf.io.gfile.exists(work_dir):
    tf.io.gfile.rmtree(work_dir)
  composition = funnel_export.export(retrieval[1], retrieval[0],
                                     ranking[1] if ranking else None,
                                     ranking[0] if ranking else None, data_dir, work_dir)
  version = max(int(time.time()), (previous[0] + 1) if previous else 0)
  while tf.io.gfile.exists(os.path.join(base, str(version))):  # two composes in 1 second
    version += 1
  destination = push_version(work_dir, base, str(version))
  return {"pushed": 1, "version": version, "destination": destination,
          "composition": composition}


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
    # The servable is built in the artifact's directory, which stays as its archive copy.
    result = compose(exec_properties["serving_dir"], exec_properties["data_dir"],
                     os.path.join(pushed.uri, "recommender"))
    pushed.set_int_custom_property("pushed", result["pushed"])
    if result["pushed"]:
      pushed.set_string_custom_property("pushed_version", str(result["version"]))
      pushed.set_string_custom_property("pushed_destination", result["destination"])
      composition = result["composition"]
      pushed.set_int_custom_property("retrieval_version", composition["retrieval_version"])
      pushed.set_int_custom_property("ranking_version", composition["ranking_version"])
      pushed.set_string_custom_property("ranking", composition["ranking"])
      print(f"RecommenderComposer: recommender v{result['version']} = retrieval "
            f"v{composition['retrieval_version']}; {composition['ranking']}", flush=True)
    else:
      pushed.set_string_custom_property("reason", result["why"])
      print(f"RecommenderComposer: nothing new to compose ({result['why']})", flush=True)
