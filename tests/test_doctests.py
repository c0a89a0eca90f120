"""Every example in the package's docstrings runs and says what it shows.

The examples are documentation a reader copies; a wrong one misleads. The tui and
exporter modules run theirs in their own test files.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import portkit

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(portkit.__path__, "portkit.")
    if not m.name.startswith(("portkit.tui", "portkit.exporter", "portkit.__main__"))
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, name
