"""AtomicPusher: component.py (the typed component), executor.py (its work)."""
