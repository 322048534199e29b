"""BlessingReport's executor: TFMA's validation result in words, recorded on the
report artifact as `blessed` and `reasons`."""
import json
from typing import Any, Dict, List

import tensorflow_model_analysis as tfma
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils


def _slice_name(slice_key) -> str:
  parts = [f"{k.column}={k.bytes_value.decode() or k.int64_value or k.float_value}"
           for k in slice_key.single_slice_keys]
  return ", ".join(parts) or "overall"


def _metric_name(metric_key) -> str:
  name = metric_key.name
  if metric_key.HasField("sub_key") and metric_key.sub_key.HasField("top_k"):
    name += f"@{metric_key.sub_key.top_k.value}"
  return name + (" (change vs baseline)" if metric_key.is_diff else "")


def _bound(threshold) -> str:
  value = threshold.value_threshold
  if threshold.HasField("change_threshold"):
    return f"change >= {threshold.change_threshold.absolute.value:+.4f}"
  if value.HasField("lower_bound"):
    return f">= {value.lower_bound.value:.4f}"
  return f"<= {value.upper_bound.value:.4f}"


def failure_reasons(validation_result) -> List[str]:
  reasons = []
  for per_slice in validation_result.metric_validations_per_slice:
    for failure in per_slice.failures:
      value = failure.metric_value.double_value.value
      reasons.append(f"{_metric_name(failure.metric_key)} = {value:.4f} on "
                     f"{_slice_name(per_slice.slice_key)}; required {_bound(failure.metric_threshold)}")
  if validation_result.missing_thresholds:
    reasons.append(f"missing thresholds: {len(validation_result.missing_thresholds)}")
  return reasons


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    evaluation = artifact_utils.get_single_instance(input_dict["evaluation"])
    blessing = artifact_utils.get_single_instance(input_dict["blessing"])
    report = artifact_utils.get_single_instance(output_dict["report"])
    blessed = int(blessing.get_int_custom_property("blessed") or 0)
    reasons = failure_reasons(tfma.load_validation_result(evaluation.uri))
    report.set_int_custom_property("blessed", blessed)
    report.set_string_custom_property("reasons", json.dumps(reasons))
    verdict = "BLESSED" if blessed else "NOT BLESSED: " + "; ".join(reasons or ["see TFMA output"])
    print(f"BlessingReport: {verdict}", flush=True)
