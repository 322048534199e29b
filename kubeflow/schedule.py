"""Uploads a compiled spec as a new pipeline version and points a cron recurring run at it.

KFP v2beta1 cannot edit a recurring run's pipeline version, so "update" means: create
the new recurring run first, then delete the old ones with the same display name (if
creating fails, the old schedule keeps running).
"""
import dataclasses
import datetime
import hashlib
from typing import Any, Dict, List

import yaml

from recsys_tfx.kubeflow import cron
from recsys_tfx.kubeflow.config import ScheduleConfig
from recsys_tfx.kubeflow.kfp_api import KfpClient, KfpError


@dataclasses.dataclass
class ScheduleResult:
  pipeline_id: str
  pipeline_version_id: str
  experiment_id: str
  recurring_run_id: str
  replaced: List[str]
  cron: str


def check_parameters(spec: Dict[str, Any], parameters: Dict[str, Any]) -> None:
  """Runtime parameters must be ones the spec declares (root.inputDefinitions)."""
  declared = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
  unknown = sorted(set(parameters) - set(declared))
  if unknown:
    raise KfpError(f"schedule.parameters {unknown} are not parameters of the pipeline; "
                   f"it declares {sorted(declared) or 'none'}")


def version_name(spec: Dict[str, Any], now: datetime.datetime) -> str:
  """Unique per upload (KFP requires unique version names within a pipeline), and says
  when it was uploaded and which spec it holds."""
  digest = hashlib.sha256(yaml.safe_dump(spec, sort_keys=True).encode()).hexdigest()[:8]
  return f"{spec['pipelineInfo']['name']}-{now:%Y%m%d-%H%M%S}-{digest}"


def recurring_run_body(schedule: ScheduleConfig, display_name: str, kfp_cron: str,
                       pipeline_id: str, version_id: str, experiment_id: str,
                       pipeline_root: str) -> Dict[str, Any]:
  """A v2beta1 RecurringRun (backend/api/v2beta1/recurring_run.proto)."""
  body = {
      "display_name": display_name,
      "description": f"recsys: cron '{schedule.cron}' (KFP: '{kfp_cron}')",
      "pipeline_version_reference": {"pipeline_id": pipeline_id,
                                     "pipeline_version_id": version_id},
      "runtime_config": {"parameters": dict(schedule.parameters),
                         "pipeline_root": pipeline_root},
      "trigger": {"cron_schedule": {"cron": kfp_cron}},
      "max_concurrency": schedule.max_concurrency,
      "mode": "ENABLE",
      "no_catchup": schedule.no_catchup,
      "experiment_id": experiment_id,
  }
  if schedule.service_account:
    body["service_account"] = schedule.service_account
  return body


def schedule(client: KfpClient, spec: Dict[str, Any], schedule_config: ScheduleConfig,
             now: datetime.datetime = None) -> ScheduleResult:
  """Every input is checked before the first request, so bad input sends nothing."""
  kfp_cron = cron.to_kfp(schedule_config.cron)
  check_parameters(spec, schedule_config.parameters)
  name = spec["pipelineInfo"]["name"]
  display_name = schedule_config.display_name or f"{name}-schedule"
  namespace = schedule_config.namespace
  version = version_name(spec, now or datetime.datetime.now(datetime.timezone.utc))
  # Uploaded as YAML, the form kfp's compiler writes: some KFP releases' template sniffing
  # (backend/src/apiserver/template/template.go, isPipelineSpec) rejects JSON uploads.
  spec_file = (f"{version}.yaml", yaml.safe_dump(spec, sort_keys=True).encode(),
               "application/x-yaml")

  client.healthz()  # fails fast, before any upload, when the host is not KFP
  pipeline_id = client.find_pipeline(name, namespace) or client.create_pipeline(
      name, "recsys-tfx: compiled by `recsys kubeflow`", namespace)
  version_id = client.upload_version(pipeline_id, version, f"compiled spec {version}",
                                     spec_file)
  experiment = schedule_config.experiment
  experiment_id = (client.find_experiment(experiment, namespace)
                   or client.create_experiment(experiment, namespace))
  old = client.find_recurring_runs(display_name, experiment_id, namespace)
  body = recurring_run_body(schedule_config, display_name, kfp_cron, pipeline_id,
                            version_id, experiment_id, spec.get("defaultPipelineRoot", ""))
  run_id = client.create_recurring_run(body)
  for old_id in old:
    client.delete_recurring_run(old_id)
  return ScheduleResult(pipeline_id, version_id, experiment_id, run_id, old, kfp_cron)
