"""Custom TFX components, one folder each: component.py (the typed, validated
component), executor.py (what it does). evaluation_data.py holds what the evaluating
components share; ingest/ reads the sources into canonical data; tfma_metrics.py is the
module TFMA loads the rank metrics from."""
