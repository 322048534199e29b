import os
import sys

# The project's packages set TF_USE_LEGACY_KERAS on import; tests may import TensorFlow
# first, so set it here as well.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
