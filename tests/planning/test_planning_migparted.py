import re

import yaml

from webhook.core.catalog import builtin_catalog
from webhook.planning.geometry import WHOLE_LAYOUT, configurations, realise
from webhook.planning.migparted import (
    config_for_layouts,
    config_for_node,
    document,
    dump,
    layout_name,
    parse_config_file,
)

H100 = builtin_catalog().lookup("H100-80GB")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def test_every_layout_name_is_a_valid_label_value_and_unique():
    names = [layout_name(l) for l in configurations(H100)]
    assert len(set(names)) == len(names)
    assert all(LABEL_VALUE.match(n) for n in names), [n for n in names if not LABEL_VALUE.match(n)]


def test_document_follows_mig_parted_spec():
    layouts = [realise(H100, {"1g.10gb": 7}), WHOLE_LAYOUT, realise(H100, {"1g.10gb": 7})]
    doc = yaml.safe_load(dump(document(config_for_layouts(layouts))))
    assert doc == {
        "version": "v1",
        "mig-configs": {
            "all-disabled": [{"devices": "all", "mig-enabled": False}],
            "rightsizer-7x1g.10gb": [{"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 7}}],
        },
    }
    assert parse_config_file(dump(doc)) == doc["mig-configs"]


def test_node_with_different_gpus_lists_devices():
    a, b = realise(H100, {"3g.40gb": 2}), realise(H100, {"1g.10gb+me": 1, "1g.10gb": 6})
    name, entries = config_for_node([a, b, a])
    assert LABEL_VALUE.match(name)
    assert entries == [
        {"devices": [0, 2], "mig-enabled": True, "mig-devices": {"3g.40gb": 2}},
        {"devices": [1], "mig-enabled": True, "mig-devices": {"1g.10gb": 6, "1g.10gb+me": 1}},
    ]
    assert "devices: [0, 2]" in dump(document({name: entries}))
