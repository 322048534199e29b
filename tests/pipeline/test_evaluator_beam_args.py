"""The Evaluators' Beam args as the compiled pipeline holds them: in-process on the
DirectRunner (ScaNN's ops are registered in this process only), the pipeline's own
distributed runner, untouched, otherwise. Compiled in-process; nothing runs."""
import os

import pytest

from recsys_tfx.pipeline import configs
from recsys_tfx.pipeline.pipeline import IN_PROCESS_BEAM, create_pipeline, evaluator_beam_args
from recsys_tfx.schema.features import SCHEMA_DIR

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(SCHEMA_DIR, "synthetic", "schema.pbtxt")
DIRECT = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
DATAFLOW = ["--runner=DataflowRunner", "--project=p", "--region=us-central1",
            "--temp_location=gs://b/tmp"]


def compiled_beam_args(beam_args):
  """{Evaluator id: its beam_pipeline_args in the compiled IR}."""
  from tfx.dsl.compiler import compiler
  from tfx.proto.orchestration import executable_spec_pb2, pipeline_pb2
  config = configs.load(os.path.join(REPO, "configs", "demo.yaml"), {"beam_args": beam_args})
  ir = compiler.Compiler().compile(create_pipeline(config, "/tmp/data", SCHEMA))
  deployment = pipeline_pb2.IntermediateDeploymentConfig()
  ir.deployment_config.Unpack(deployment)
  out = {}
  for node in ("RetrievalValidator", "RankingValidator"):
    spec = executable_spec_pb2.BeamExecutableSpec()
    deployment.executor_specs[node].Unpack(spec)
    out[node] = list(spec.beam_pipeline_args)
  return out


def test_on_the_direct_runner_tfma_runs_in_process_after_the_pipelines_args():
  for node, args in compiled_beam_args(DIRECT).items():
    # TFX puts the component's args after the pipeline's: the in-process ones win
    assert args == DIRECT + IN_PROCESS_BEAM, node


def test_on_a_distributed_runner_tfma_keeps_the_pipelines_runner():
  for node, args in compiled_beam_args(DATAFLOW).items():
    assert args == DATAFLOW, node
    assert not any(a.startswith("--direct_") for a in args)


@pytest.mark.parametrize("args, in_process", [
    ([], True), (["--runner=DirectRunner"], True), (["--runner=FlinkRunner"], False),
    (["--runner=DataflowRunner", "--runner=DirectRunner"], True),  # the last one wins
    (["--runner=SparkRunner"], False)])
def test_which_runners_get_the_in_process_flags(args, in_process):
  assert (evaluator_beam_args(args) == IN_PROCESS_BEAM) is in_process
