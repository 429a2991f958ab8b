"""The local workspace: an HTTP server that answers the subset of the Databricks REST API the
reconciler uses, so the unmodified `databricks-sdk` can be pointed at it for demos, integration
tests, benchmarks and fault tests. Start one with `reconciler sim serve` (`server.run`) or, in a
test, `server.LocalWorkspace`. See `server.py` for the request rules, controls and seed format.
"""
