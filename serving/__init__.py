"""A model server that speaks TF Serving's API over TF Serving's directory layout, its
client and the recommendation funnel. It reads models only through the export contract
(schema/export_contract.py) and imports nothing else of this project but schema/."""
