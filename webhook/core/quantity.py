"""Kubernetes resource quantities ("40Gi", "500m"): the kubernetes client's own
``kubernetes.utils.quantity.parse_quantity``, loaded without the package around it.

``import kubernetes.utils.quantity`` first runs ``kubernetes/__init__.py``, which imports
the whole generated API client: ~14,000 objects, 12 MiB and 0.11 s in every process
that serves admissions (the master and each worker), for one function whose only import
is ``decimal``. So the installed module file (source or bytecode, in any directory of
the package) is loaded on its own: the same code, from the same installed version. An
install this cannot read as a plain file (a zipped package) gets the usual import:
heavier, same function. The commands that talk to a cluster (cert-install, plan --live)
import the client as usual. tests/test_quantity.py holds this module's answers equal to
the package's, loads it from each layout, and checks that serving does not import the
package.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from decimal import Decimal
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader, SourcelessFileLoader
from types import ModuleType
from typing import cast

_NAME = "webhook.core._kubernetes_quantity"


def _load_quantity_module() -> ModuleType:
    # find_spec of a top-level name locates the package without running its __init__;
    # PathFinder then looks for utils/quantity in every directory of it (a namespace
    # package may have several), as the import system would, without importing parents.
    package = importlib.util.find_spec("kubernetes")
    places = [os.path.join(p, "utils") for p in (package.submodule_search_locations or [])] if package else []
    found = PathFinder.find_spec("kubernetes.utils.quantity", places) if places else None
    loader = found.loader if found else None
    if not isinstance(loader, (SourceFileLoader, SourcelessFileLoader)):
        from kubernetes.utils import quantity  # ImportError as usual when it is not installed

        return quantity
    loader = type(loader)(_NAME, loader.path)
    # A file location with a loader always gives a spec.
    spec = cast(ModuleSpec, importlib.util.spec_from_file_location(_NAME, loader.path, loader=loader))
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


parse_quantity: Callable[[object], Decimal] = _load_quantity_module().parse_quantity
