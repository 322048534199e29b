"""Compiles the pipeline (pipeline.pipeline.create_pipeline, the same one LocalDagRunner
runs) into a KFP v2 PipelineSpec with KubeflowV2DagRunner.

With `data: spans:<bucket pattern>` (kubeflow/config.py) the pattern and the window reach
TimeSplitExampleGen, which resolves the newest span(s) each time it runs, uncached.

The schema is the one path mapped for the cluster: create_pipeline reads it while building
(to validate the config), so it gets the repo's copy; the paths it records are then moved
to the image's copy (<image_repo_root>/schema/...; the Dockerfile installs the repo there).
Bucket URIs (pipeline root, serving dir) pass through create_pipeline unchanged. A final
check refuses a spec that still names a path on this machine.
"""
import dataclasses
import json
import os
import tempfile
from typing import Any, Dict

import yaml

from recsys_tfx.components.ingest import spans
from recsys_tfx.pipeline import configs
from recsys_tfx.kubeflow.config import REPO_ROOT, KubeflowConfig
from recsys_tfx.pipeline.configs import PipelineConfig


class CompileError(ValueError):
  pass


def remote_pipeline_config(kf: KubeflowConfig) -> PipelineConfig:
  config = dataclasses.replace(configs.load(_find(kf.pipeline_config)),
                               pipeline_root=kf.pipeline_root, serving_dir=kf.serving_dir)
  return dataclasses.replace(config, data=kf.data) if kf.data else config


EXAMPLE_GEN = "TimeSplitExampleGen"


def _find(path: str) -> str:
  """A path as given, else relative to the repository (configs are part of it)."""
  return path if os.path.exists(path) else os.path.join(REPO_ROOT, path)


def build_pipeline(kf: KubeflowConfig):
  from recsys_tfx.pipeline.pipeline import create_pipeline  # imports TFX and TensorFlow
  pipeline = create_pipeline(remote_pipeline_config(kf), kf.data_dir, kf.local_schema_file(),
                             beam_args=list(kf.beam_args))
  _relocate_repo_paths(pipeline, kf.image_repo_root)
  return pipeline


def _relocate_repo_paths(pipeline, image_repo_root: str) -> None:
  """Paths into this repository (schema files) -> the same files inside the image.
  Execution properties are strings (JSON for dicts), so a prefix swap covers both."""
  local, image = REPO_ROOT.rstrip("/") + "/", image_repo_root.rstrip("/") + "/"
  for node in pipeline.components:
    for key, value in list(node.exec_properties.items()):
      if isinstance(value, str) and local in value:
        node.exec_properties[key] = value.replace(local, image)


def compile_spec(kf: KubeflowConfig) -> Dict[str, Any]:
  """The PipelineSpec dict (what KFP's upload API takes), with defaultPipelineRoot set."""
  from tfx import v1 as tfx
  pipeline = build_pipeline(kf)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=kf.image))
  job = runner.run(pipeline, write_out=False)  # a PipelineJob; we keep its pipelineSpec
  spec = job["pipelineSpec"]
  # PipelineSpec.default_pipeline_root (kfp pipeline_spec.proto, field 10): KFP uses it
  # when a run does not set runtime_config.pipeline_root.
  spec["defaultPipelineRoot"] = kf.pipeline_root
  if spans.is_span_source(remote_pipeline_config(kf).data):
    # The spans are resolved when ExampleGen runs, and nothing in its inputs or properties
    # says which day it is: a cached result would be yesterday's spans. Its new examples
    # then make every task downstream miss the cache too.
    spec["root"]["dag"]["tasks"][EXAMPLE_GEN]["cachingOptions"] = {"enableCache": False}
  _check_no_local_paths(spec)
  return spec


def _check_no_local_paths(spec: Dict[str, Any]) -> None:
  text = json.dumps(spec)
  for local in {REPO_ROOT, os.getcwd()} - {"/"}:
    at = text.find(local + "/")
    if at >= 0:
      snippet = text[at:at + 120].split('"')[0].split("\\")[0]
      raise CompileError(f"the compiled spec still names a path on this machine ({snippet}); "
                         f"pods cannot read it: make it a bucket URI or a file in the repo")


def dump(spec: Dict[str, Any], path: str) -> str:
  """JSON, or YAML when the path ends in .yaml/.yml (the form KFP's upload API reads)."""
  if path.endswith((".yaml", ".yml")):
    return yaml.safe_dump(spec, sort_keys=True)
  return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def write(spec: Dict[str, Any], path: str) -> None:
  """Atomically: a failed compile never leaves a half-written spec behind."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as f:
      f.write(dump(spec, path))
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
