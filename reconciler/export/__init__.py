"""Live objects → manifests: `reconciler export`, to adopt endpoints and models made elsewhere.

Called by the `export` command in cli.py, in three steps, one module each: `read.read_live` reads
what was asked for through `Workspace` (in parallel, each object once); `convert.export_objects`
turns those API-shaped dicts into manifest documents (pure, no I/O), each by its kind's conversion
(`endpoints.py`, `models.py`, on the documents of `documents.py`); `write.write_export` renders
each document as commented YAML (`commented_yaml.render`) and writes every file, all of them or none.

An exported manifest must normalise back to exactly the live state, so `export` then `plan` shows
no changes: it is built from the same normalised shape the planner compares against
(`normalize.live_endpoint`, `live_model`, `live_permissions`), and only leaves out what the
normaliser fills back in. The rules (also in README, "Adopting existing endpoints"):

 1. One file per object: `endpoints/<name>.yaml`, `models/<catalog.schema.model>.yaml`; a
    `${var.NAME}` in a name is spelt `{NAME}` in the file name. Keys in the manifest format's
    order, maps sorted by key, served entities by traffic share (largest first), then name.
    No timestamps or hosts: the same workspace always exports the same bytes.
 2. Left out because it is the API's default, the server fills it in or the reconciler owns it
    (normalize.py rules 3-7, FIELD_RULES), with a comment saying so: a served entity `name` equal
    to the server's default `<model>-<version>` (pinned entities only, see 3), `workload_type:
    CPU`, `workload_size` / `workload_type` of provisioned-throughput entities and `workload_size`
    of provisioned-concurrency ones (the server's), the single 100% route, the reconciler's own
    `managed-by` / `reconciler-stack` tags, inherited grants and the creator's own grant, a
    model's `owner`, an empty description, `route_optimized: false`. A served entity is complete
    (a field left out means the API's default), so everything else it has live is written:
    `scale_to_zero_enabled` always, on entities that scale (writes must send it; when the
    workspace does not report it, `false` is written with a TODO and a warning), and fields this
    release does not know are left out with a note (they are kept as they are live).
 3. Aliases: an entity that serves a version an alias of its model points at is written
    `alias:` (a comment names the version), and the model's manifest is exported with it, with
    all its aliases (checks.py needs a manifest to define any alias used). Several aliases on
    one version: the alias named like the served entity, else `champion`, else the first in
    alphabetical order. Such an entity keeps its `name` even when it is the default, so that
    moving the alias updates the entity in place instead of renaming it. `--pin-versions`
    writes `entity_version` instead (and exports models only when asked).
 4. Secrets: references stay references. A plain value that checks.py refuses (a credential-
    looking name, or a malformed reference) is never written nor printed: the manifest gets the
    reference `{{secrets/<endpoint>/<variable in lower case>}}` with a TODO, and stderr a
    warning. The file validates; `plan` fails on the missing secret until someone stores the
    value there or points at the secret that holds it, so the credential never reaches git and
    nobody can apply the manifest without deciding.
 5. What the format cannot describe: endpoints serving external models, foundation models or
    non-Unity-Catalog models are not exported (a manifest listing only their other entities
    would remove those on the next apply). A note `endpoints/<name>.unsupported.txt` and a
    warning say why; with --all-endpoints, Databricks' own pay-per-token foundation model
    endpoints are only counted in one warning. A single value the format cannot hold is left
    out (unmanaged: the normaliser keeps the live value) with a comment and a warning.
 6. `--var NAME=VALUE`: a name or value equal to VALUE, or one dot-separated part of a Unity
    Catalog name equal to it, is written `${var.NAME}` (model and entity names, inference table
    locations, tag values, environment variable values); never part of a word. A literal `${`
    in any other value is written `$${` so it loads back unchanged.
 7. An endpoint with an update in flight is exported from the config it serves (`config`), not
    from `pending_config`, with a warning; one still being created has nothing to export yet. An
    Agent Bricks endpoint is READY with `config: {}` (real-api/endpoint_list_01.json): its served
    entities are not visible through the API, so it is skipped as one manifests cannot describe
    (rule 5), saying so; with --all-endpoints they are counted in one warning.
 8. A legacy inference table (`auto_capture_config`) is not exported (validate refuses it: it can
    no longer be enabled); a note and a warning say to move to `ai_gateway.inference_table_config`.
"""
