"""TimeSplitExampleGen: component.py (the typed component), executor.py (its Beam job),
options.py (its settings, shared by both)."""
