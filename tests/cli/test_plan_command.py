import json
from pathlib import Path

import yaml

from tests.support.layouts import layout_problems
from webhook.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MIX = str(EXAMPLES / "reference-mix")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_reference_mix_report(tmp_path, capsys):
    assert main(["plan", MIX, "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # 95 one-GPU pods + 5 pods x 2 GPUs = 105 whole GPUs. Right-sized (tests/planning:
    # test_reference_mix_sizes): 15 x 1g.10gb, 60 x 1g.20gb, 20 x 3g.40gb and 10 whole GPUs;
    # 15 + 2 x 60 + 4 x 20 = 215 memory slices need ceil(215 / 8) = 27 GPUs, + 10 = 37.
    assert "whole-GPU requests: 105 GPUs; right-sized: 37 GPUs; ratio 2.84x; lower bound 37; proven optimal" in out
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["gpus_whole_gpu_requests"] == 105 and data["gpus_right_sized"] == 37
    assert data["ratio"] == round(105 / 37, 3) and data["proven_optimal"] and data["pods"] == 100
    pool = data["pools"][0]
    assert pool["gpus"] == pool["lower_bound"] == 37 and pool["whole_gpus"] == 10
    assert 0 < pool["slice_utilisation"] <= 1 and 0 < pool["memory_utilisation"] <= 1
    md = (tmp_path / "report.md").read_text()
    assert "**105**" in md and "**37**" in md and "proven optimal" in md
    for chart in ("gpus.png", "utilisation.png", "layout-h100-80.png"):
        assert (tmp_path / chart).read_bytes().startswith(PNG_MAGIC)
        assert f"]({chart})" in md


def test_mig_parted_config_structure_and_layouts(tmp_path, capsys):
    out_file = tmp_path / "config.yaml"
    assert main(["plan", MIX, "--config-out", str(out_file)]) == 0
    doc = yaml.safe_load(out_file.read_text())
    assert doc["version"] == "v1" and set(doc) == {"version", "mig-configs"}
    for name, entries in doc["mig-configs"].items():
        assert isinstance(entries, list) and entries
        for entry in entries:
            assert set(entry) <= {"device-filter", "devices", "mig-enabled", "mig-devices"}
            assert entry["devices"] == "all" and isinstance(entry["mig-enabled"], bool)
            if entry["mig-enabled"]:
                counts = entry["mig-devices"]
                assert all(isinstance(n, int) and n > 0 for n in counts.values())
                # some placement of these counts passes the independent checker
                from webhook.core.catalog import builtin_catalog
                from webhook.planning.geometry import realise

                layout = realise(builtin_catalog().lookup("H100-80GB"), counts)
                assert layout_problems("H100-80GB", [(i.profile, i.start, i.size) for i in layout.instances]) == []
            else:
                assert name == "all-disabled" and "mig-devices" not in entry
    assert "all-disabled" in doc["mig-configs"]


def test_empty_demand_says_so(tmp_path, capsys):
    (tmp_path / "cm.yaml").write_text("kind: ConfigMap\nmetadata: {name: x}\n")
    assert main(["plan", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "nothing to plan: 1 workload(s) read, none needs a GPU" in captured.out
    assert "ConfigMap" in captured.err


def test_demand_that_does_not_fit_names_the_left_over_pods(capsys):
    assert main(["plan", MIX, "--gpus", "h100-80=30"]) == 1
    captured = capsys.readouterr()
    assert "left over:" in captured.err and "does not fit: pool h100-80 has 30 GPUs" in captured.err
    # 37 GPUs are the minimum: 7 short. The fewest units to leave out are 7 whole GPUs (one
    # GPU each), and a pod is left over whole: 4 of the 2-GPU pods, 8 units.
    assert captured.err.count("left over:") == 8


def test_gpus_by_model_name_and_bad_spec(capsys):
    assert main(["plan", MIX, "--gpus", "H100-80GB=40"]) == 0
    assert main(["plan", MIX, "--gpus", "a100=4"]) == 2
    assert "'a100' is neither a pool nor the GPU model of one" in capsys.readouterr().err
    assert main(["plan", MIX, "--gpus", "h100-80"]) == 2
    assert "is not NAME=COUNT" in capsys.readouterr().err


def test_no_input_is_a_usage_error(capsys):
    assert main(["plan"]) == 2
    assert "plan needs manifests" in capsys.readouterr().err


def test_big_fleet_report_draws_one_row_per_layout(tmp_path, capsys):
    manifest = tmp_path / "big.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "many"},
                "spec": {
                    "replicas": 500,
                    "template": {
                        "metadata": {"annotations": {"gpu-rightsizer.io/model-size": "3b"}},
                        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
                    },
                },
            }
        )
    )
    assert main(["plan", str(manifest), "--report", str(tmp_path / "r")]) == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["gpus_right_sized"] == 72 == data["lower_bound"]  # ceil(500 / 7)
    assert (tmp_path / "r" / "layout-h100-80.png").read_bytes().startswith(PNG_MAGIC)


def test_docs_quote_a_real_run_of_the_reference_mix(tmp_path, capsys):
    """docs/planner.md shows the whole output of the command, the README its headline lines:
    both are what the command prints now."""
    assert main(["plan", MIX, "--report", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out.replace(str(tmp_path / "report"), "report").splitlines()
    root = EXAMPLES.parent
    planner = (root / "docs" / "planner.md").read_text().splitlines()
    start = planner.index("    $ gpu-rightsizer plan examples/reference-mix/ --report report/") + 1
    block = []
    for line in planner[start:]:
        if not line.startswith("    "):
            break
        block.append(line[4:])
    assert block == out
    readme = (root / "README.md").read_text()
    shown = readme[readme.index("$ gpu-rightsizer plan examples/reference-mix/") :].split("```")[0].splitlines()[1:]
    assert [line for line in shown if line.strip() and line != "..."] == [
        line for line in out if line.startswith(("pool ", "h100-80 ", "whole-GPU", "report:"))
    ]
