"""The runnable examples in module docstrings stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import models
import retrain
import streams
import txmon

# Pure modules and adapters whose import has no side effects; heavy ones opt in by having doctests.
PACKAGES = (txmon, models, streams, retrain)
SKIP = ("txmon.cli", "txmon.commands")


def _modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
            if not info.name.startswith(SKIP):
                names.append(info.name)
    return sorted(names)


def _with_examples(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return bool(spec and spec.origin and ">>>" in open(spec.origin).read())


@pytest.mark.parametrize("name", [n for n in _modules() if _with_examples(n)])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
