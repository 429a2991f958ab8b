"""`make demo`: the tour a new user runs with no Databricks account.

Starts the local workspace (seeded with the model's earlier versions, three agents as MLflow logged
them and not registered yet, a secret scope and a vector index), then runs the real `reconciler`
commands one after another, printing each as you would type it: validate, plan (register the
logged agent, create the endpoint, set the challenger alias), apply, plan again (no changes), an
edit made from outside (as someone clicking in the UI would) and the drift plan, a promotion of
challenger to champion by editing the manifest (the same logged agent: already registered), and
apply; then, with a rollout declared, a bad logged agent registered and rolled back automatically
by its smoke query, and a good one registered and promoted to champion through traffic steps
judged from the metrics export while queries flow. The workspace is stopped at the end, whatever
happens.
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
BAD_AGENT = "models:/m-7b2e3c4d5e6f4a70819203b4c5d6e7f8"  # logged without the grant its vector index needs
BETTER_AGENT = "models:/m-8c3f4d5e6f7a4b80912304c5d6e7f809"  # better retrieval


def banner(step: str, text: str) -> None:
    from reconciler.render import wants_colour

    print(f"\n\033[1m── {step} ─ {text}\033[0m" if wants_colour(sys.stdout) else f"\n── {step} ─ {text}", flush=True)


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
        rollouts(env, path)
        banner("10", "and once more: converged")
        reconciler("plan", "--detailed-exitcode", env=env)
        print("\nDone. The manifests are in manifests/; the README explains the format and how to run this in CI.")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


ROLLOUT = """\
  rollout:                      # health-gated promotion: README, "Rollouts"
    smoke:
      - name: answers-a-question
        request:
          messages: [{role: user, content: "What is MLflow?"}]
          custom_inputs: {session_id: smoke-test}
          databricks_options: {return_trace: true}
        expect:
          status: 200
          max_latency_ms: 10000
          json:
            - {path: "$.choices[0].message.content", matches: "(?i)mlflow"}
    steps: [10, 50, 100]
    pause: 2s
    analysis:
      max_error_rate: 0.01
      max_p99_latency_ms: 3000
      min_requests: 10
"""


def rollouts(env: dict[str, str], path: Path) -> None:
    """Steps 8 and 9: a rollout block, a bad challenger rolled back, a good champion promoted in steps."""
    from reconciler.localworkspace.traffic import Traffic

    _sim(env, "/update-seconds", {"seconds": 1})  # shorter updates from here on: the rollout makes five
    banner("8", "declare a rollout, and try a new logged agent as challenger: it deploys, but cannot read its "
                "vector index")
    text = path.read_text()
    path.write_text(re.sub(r"challenger: models:/\S+", f"challenger: {BAD_AGENT}", text) + ROLLOUT)
    print("$ cat >> manifests/support-agent.yaml  # spec.rollout: a smoke query, steps 10/50/100%, 2s pauses, "
          f"analysis\n$ sed -i 's|challenger: models:/.*|challenger: {BAD_AGENT}|' manifests/support-agent.yaml")
    reconciler("apply", "--auto-approve", env=env, expect=(1,))
    print("(it was registered as version 5, but its smoke query failed before it took any traffic: it was removed, "
          "and the challenger alias stayed on version 4)")
    banner("9", "a better logged agent: register it and promote it to champion through 10%, 50%, 100% of the "
                "champion's traffic")
    text = re.sub(r"challenger: models:/\S+", f"challenger: {LOGGED_AGENT}", path.read_text())
    path.write_text(re.sub(r"champion: models:/\S+", f"champion: {BETTER_AGENT}", text))
    print(f"$ sed -i 's|challenger: models:/.*|challenger: {LOGGED_AGENT}|; "
          f"s|champion: models:/.*|champion: {BETTER_AGENT}|' manifests/support-agent.yaml")
    print("(meanwhile 40 queries a second reach the endpoint, as users' would: `reconciler sim traffic`)")
    with Traffic(env["DATABRICKS_HOST"], TOKEN, "support-agent", rate=40) as traffic:
        reconciler("apply", "--auto-approve", env=env)
    print(f"(traffic: {traffic.report.summary()})")


def _sim(env: dict[str, str], path: str, body: dict[str, object]) -> None:
    """A local workspace control (`/__sim/...`: never part of the real API)."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{env['DATABRICKS_HOST']}/__sim{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()


def drift(env: dict[str, str]) -> None:
    """An out-of-band edit through the plain SDK, as the UI or a notebook would make it."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import EndpointTag, ServedEntityInput, TrafficConfig

    client = WorkspaceClient(host=env["DATABRICKS_HOST"], token=TOKEN)
    client.serving_endpoints.patch("support-agent", add_tags=[EndpointTag(key="team", value="platform")])
    served = client.serving_endpoints.get("support-agent").as_dict()["config"]["served_entities"]
    client.serving_endpoints.update_config_and_wait(
        "support-agent", served_entities=[ServedEntityInput.from_dict(e) for e in served],
        traffic_config=TrafficConfig.from_dict({"routes": [{"served_entity_name": "champion", "traffic_percentage": 50},
                                                           {"served_entity_name": "challenger", "traffic_percentage": 50}]}))
    print("(made with databricks-sdk: serving_endpoints.patch(...) and update_config_and_wait(...))")


if __name__ == "__main__":
    main()
