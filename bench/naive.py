"""The baseline the reconciler is compared with: a straightforward promotion script.

One endpoint at a time, using `databricks-sdk` the way the Databricks documentation shows it:
get the endpoint, compare the served version with the wanted one, `update_config_and_wait`,
then move the alias. No plan, no readiness check of the version, no parallelism.
"""

from __future__ import annotations


def promote(host: str, token: str, agents: list[tuple[str, str, int]]) -> None:
    """`agents`: (endpoint name, model full name, version to serve and to alias `champion`)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import ServedEntityInput

    w = WorkspaceClient(host=host, token=token)
    for endpoint, model, version in agents:
        current = w.serving_endpoints.get(endpoint)
        served = current.config.served_entities if current.config else []
        if any(entity.entity_version != str(version) for entity in served):
            w.serving_endpoints.update_config_and_wait(
                name=endpoint,
                served_entities=[ServedEntityInput(
                    name=entity.name, entity_name=entity.entity_name, entity_version=str(version),
                    workload_size=entity.workload_size, scale_to_zero_enabled=entity.scale_to_zero_enabled,
                    environment_vars=entity.environment_vars) for entity in served])
        w.registered_models.set_alias(model, "champion", version)
