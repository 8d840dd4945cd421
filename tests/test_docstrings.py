"""Every docstring example of the package runs and prints what it shows, and every module has
some, unless `NO_EXAMPLES` says why not."""

import doctest
import importlib
import pkgutil

import pytest

import keras_flop

MODULES = sorted(m.name for m in pkgutil.walk_packages(keras_flop.__path__, "keras_flop."))

_PACKAGE = "a package: its docstring names its modules, whose docstrings have the examples"
_REEXPORTS = "a package that re-exports its modules' names; their docstrings have the examples"

# Modules that run no docstring example, each with the reason. A module listed here that
# runs one fails the test, so the list stays true.
NO_EXAMPLES = {
    "keras_flop.checkpoints": _PACKAGE,
    "keras_flop.export": _PACKAGE,
    "keras_flop.export.saved_model": "an export traces the tokenizer and writes a SavedModel "
                                     "(about 20 s); covered by tests/test_export.py",
    "keras_flop.fisher": _PACKAGE,
    "keras_flop.gates": _PACKAGE,
    "keras_flop.glue": _REEXPORTS,
    "keras_flop.lagrangian": _PACKAGE,
    "keras_flop.latency": _PACKAGE,
    "keras_flop.layers": _REEXPORTS,
    "keras_flop.models": _REEXPORTS,
    "keras_flop.text": _PACKAGE,
    "keras_flop.training": _PACKAGE,
}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
    if name in NO_EXAMPLES:
        assert result.attempted == 0, (
            f"{name} runs {result.attempted} docstring example(s) but is listed in NO_EXAMPLES "
            f"({NO_EXAMPLES[name]!r}): take it off the list")
    else:
        assert result.attempted > 0, (
            f"{name} runs no docstring example: add an 'Example:' to its public functions and "
            "classes, or list it in NO_EXAMPLES with the reason")


def test_no_examples_lists_existing_modules_with_reasons():
    assert sorted(set(NO_EXAMPLES) - set(MODULES)) == []
    assert all(reason.strip() for reason in NO_EXAMPLES.values())
