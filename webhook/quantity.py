"""Kubernetes resource quantities ("40Gi", "500m"): the kubernetes client's own
``kubernetes.utils.quantity.parse_quantity``, loaded without the package around it.

``import kubernetes.utils.quantity`` first runs ``kubernetes/__init__.py``, which imports
the whole generated API client: ~20,000 objects, 16 MiB and 0.3 s in every process that
serves admissions (the master and each worker), for one function whose only import is
``decimal``. So the installed file is loaded on its own: the same code, from the same
installed version. The commands that talk to a cluster (cert-install, plan --live) import
the client as usual. tests/test_quantity.py holds this module's answers equal to the
package's and checks that serving does not import the package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "webhook._kubernetes_quantity"


def _load_quantity_module():
    # find_spec of a top-level name locates the package without running its __init__.
    package = importlib.util.find_spec("kubernetes")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the kubernetes package is not installed (pip install -e .)")
    path = Path(next(iter(package.submodule_search_locations))) / "utils" / "quantity.py"
    spec = importlib.util.spec_from_file_location(_NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


parse_quantity = _load_quantity_module().parse_quantity
