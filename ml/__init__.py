"""The seed spelling of :mod:`radiobject.ml`: ``from ml import ...`` and ``from ml.X import ...``.

Every ``ml.X`` module *is* ``radiobject.ml.X`` (the same module object, so classes, enums and
caches are shared, and ``isinstance`` holds across both spellings). New code should import
``radiobject.ml``: a user's own ``ml/`` folder on ``sys.path`` would shadow this alias.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

_TARGET = "radiobject.ml"


class _AliasLoader(importlib.abc.Loader):
    """Loads ``ml.X`` by importing ``radiobject.ml.X`` and returning that very module."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._real_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self._target)
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its real name; undo the import system's re-labelling of __spec__.
        module.__spec__ = self._real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``ml.<sub>`` to ``radiobject.ml.<sub>``."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(__name__ + "."):
            return None
        real = _TARGET + fullname[len(__name__) :]
        real_spec = importlib.util.find_spec(real)
        if real_spec is None:
            return None
        is_package = real_spec.submodule_search_locations is not None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real), is_package=is_package)


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())

_real = importlib.import_module(_TARGET)
sys.modules[__name__] = _real
