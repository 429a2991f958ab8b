"""`make demo`: the tour a new user runs with no Databricks account.

Starts the local workspace (seeded with the model's earlier versions, the new agent as MLflow logged
it and not registered yet, a secret scope and a vector index), then runs the real `reconciler`
commands one after another, printing each as you would type it: validate, plan (register the
logged agent, create the endpoint, set the challenger alias), apply, plan again (no changes), an
edit made from outside (as someone clicking in the UI would) and the drift plan, a promotion of
challenger to champion by editing the manifest (the same logged agent: already registered), and
apply. The workspace is stopped at the end, whatever happens.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN = "demo-token"
LOGGED_AGENT = "models:/m-6a1f2b3c4d5e4f60718293a4b5c6d7e8"  # the challenger in manifests/support-agent.yaml


def banner(step: str, text: str) -> None:
    print(f"\n\033[1m── {step} ─ {text}\033[0m" if sys.stdout.isatty() else f"\n── {step} ─ {text}", flush=True)


def reconciler(*args: str, env: dict[str, str], expect: tuple[int, ...] = (0,)) -> None:
    print(f"$ reconciler {' '.join(args)}", flush=True)
    code = subprocess.call([str(BIN / "reconciler"), *args], env=env)
    if code not in expect:
        raise SystemExit(f"demo: `reconciler {' '.join(args)}` exited {code}, expected {expect}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    manifests = workdir / "manifests"
    shutil.copytree(ROOT / "manifests", manifests)
    env = {**os.environ, "DATABRICKS_HOST": f"http://127.0.0.1:{port}", "DATABRICKS_TOKEN": TOKEN}
    for key in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        env.pop(key, None)
    banner("0", "start the local workspace (a Databricks API look-alike on this machine)")
    print(f"$ reconciler sim serve --seed demo/workspace-seed.yaml --port {port} --update-seconds 3", flush=True)
    server = subprocess.Popen([str(BIN / "reconciler"), "sim", "serve", "--seed", str(ROOT / "demo" / "workspace-seed.yaml"),
                               "--port", str(port), "--update-seconds", "3", "--token", TOKEN],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        if "listening" not in line:
            raise SystemExit(f"demo: the local workspace did not start: {line.strip()}")
        print(line.strip().replace(TOKEN, "***"))
        os.chdir(workdir)
        banner("1", "validate the manifests offline")
        reconciler("validate", env=env)
        banner("2", "plan: register the logged agent (challenger), create the endpoint, set the alias")
        reconciler("plan", env=env)
        banner("3", "apply: register it (MLflow's client), wait until READY, create the endpoint, wait until it "
                    "serves, then set the challenger alias")
        reconciler("apply", "--auto-approve", env=env)
        banner("4", "plan again: nothing to do (a second apply would make zero writes)")
        reconciler("plan", "--detailed-exitcode", env=env)
        banner("5", "someone edits the endpoint in the UI: tag team=platform, and 50/50 traffic")
        drift(env)
        reconciler("plan", "--detailed-exitcode", env=env, expect=(2,))
        banner("6", "promote challenger to champion: name the same logged agent (already registered) and apply")
        path = manifests / "support-agent.yaml"
        path.write_text(re.sub(r"champion: 3\b.*", f"champion: {LOGGED_AGENT}   # promoted", path.read_text()))
        print(f"$ sed -i 's|champion: 3 .*|champion: {LOGGED_AGENT}   # promoted|' manifests/support-agent.yaml")
        reconciler("apply", "--auto-approve", env=env)
        banner("7", "and once more: converged")
        reconciler("plan", "--detailed-exitcode", env=env)
        print("\nDone. The manifests are in manifests/; the README explains the format and how to run this in CI.")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def drift(env: dict[str, str]) -> None:
    """An out-of-band edit through the plain SDK, as the UI or a notebook would make it."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import EndpointTag, ServedEntityInput, TrafficConfig

    client = WorkspaceClient(host=env["DATABRICKS_HOST"], token=TOKEN)
    client.serving_endpoints.patch("support-agent", add_tags=[EndpointTag(key="team", value="platform")])
    config = client.serving_endpoints.get("support-agent").config
    client.serving_endpoints.update_config_and_wait(
        "support-agent", served_entities=[ServedEntityInput.from_dict(e.as_dict()) for e in config.served_entities],
        traffic_config=TrafficConfig.from_dict({"routes": [{"served_entity_name": "champion", "traffic_percentage": 50},
                                                           {"served_entity_name": "challenger", "traffic_percentage": 50}]}))
    print("(made with databricks-sdk: serving_endpoints.patch(...) and update_config_and_wait(...))")


if __name__ == "__main__":
    main()
