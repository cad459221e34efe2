"""`gpu-rightsizer quota NAMESPACE` against a real kube-apiserver: it reads the namespace's
ResourceQuotas, and the ResourceQuota it prints is accepted by the API server and then
refuses what it should (the stock quota plugin enforcing the per-profile bound)."""

from __future__ import annotations

import json

import yaml
from controlplane import wait_for

from webhook.cli.main import main

NAMESPACE = "quota-live"


def test_translated_quota_is_applied_and_enforced_by_the_quota_plugin(control_plane, capsys):
    cp = control_plane
    cp.create_namespace(NAMESPACE)
    cp.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "team-gpus", "namespace": NAMESPACE},
            "spec": {"hard": {"requests.nvidia.com/gpu": "1"}},
        }
    )
    code = main(["quota", NAMESPACE, "--kubeconfig", str(cp.kubeconfig)])
    out = capsys.readouterr().out
    assert code == 0, out
    (translated,) = list(yaml.safe_load_all(out))
    assert translated["metadata"]["name"] == "team-gpus-mig"
    assert translated["spec"]["hard"]["requests.nvidia.com/mig-3g.40gb"] == "2"
    cp.kubectl("apply", "-f", "-", input=out)
    # The quota plugin refuses pods until the quota controller has filled in status.hard.
    wait_for(
        lambda: cp.get_json("resourcequota", "team-gpus-mig", "-n", NAMESPACE).get("status", {}).get("hard"),
        60,
        message="the translated quota's status",
    )

    def pod(name: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/mig-3g.40gb": "1"}}}
                    ]
                },
            }
        )

    cp.kubectl("apply", "-f", "-", input=pod("first"))
    cp.kubectl("apply", "-f", "-", input=pod("second"))
    third = cp.kubectl("apply", "-f", "-", input=pod("third"), check=False)
    assert third.returncode != 0
    assert "exceeded quota: team-gpus-mig" in third.stderr and "requests.nvidia.com/mig-3g.40gb" in third.stderr
