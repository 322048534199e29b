"""The data contract, the bottom layer: curated schemas (<source>/schema.pbtxt), feature
roles (features.py), the canonical data format (canonical.py), the time split
(time_split.py) and the export contract between the exporter and the server
(export_contract.py). Nothing here imports TensorFlow except features.py's proto parsing
(tensorflow_metadata)."""
