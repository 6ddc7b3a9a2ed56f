"""The check tests (test_checks.py, every reason code at / below / above its limit, and
test_checks_projection.py) run a second time here, on the pure-Python source of rules/checks.py,
while the other two modules run on whatever `import rules.checks` gives: the Cython extension
when setup built it, else the same source. Both must decide alike, so neither can drift.

The source is loaded under another name (``rules._checks_source``) and the two test modules are
executed again with ``rules.checks`` pointing at it; their test functions are collected from
here with a ``source`` prefix."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import rules
from rules import checks as installed

HERE = Path(__file__).resolve().parent
RULES = HERE.parent
SUITES = ("test_checks", "test_checks_projection", "test_checks_asset_caps")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_suites_on_source() -> tuple[ModuleType, list[ModuleType]]:
    source = _load("rules._checks_source", RULES / "checks.py")
    names = ("rules.checks", "rules.tests.test_checks")
    saved = {name: sys.modules.get(name) for name in names}
    saved_attr = rules.checks
    suites = []
    try:
        sys.modules["rules.checks"] = rules.checks = source  # `from rules import checks as c`
        for name in SUITES:
            suite = _load(f"rules.tests._source_{name}", HERE / f"{name}.py")
            suites.append(suite)
            if name == "test_checks":  # test_checks_projection imports its helpers from it
                sys.modules["rules.tests.test_checks"] = suite
    finally:
        rules.checks = saved_attr
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return source, suites


SOURCE, _SUITES = _load_suites_on_source()
for _suite in _SUITES:
    for _name, _test in vars(_suite).items():
        if _name.startswith("test_") and callable(_test):
            globals()[f"test_source_{_name[len('test_') :]}"] = _test


def test_the_source_suites_run_on_the_source():
    assert SOURCE.COMPILED is False
    assert SOURCE.__file__.endswith("checks.py")
    for suite in _SUITES:
        assert suite.c is SOURCE


def test_the_import_gives_the_extension_when_it_was_built_from_this_source():
    built = sorted(RULES.glob("checks.*.so"))
    stamp = RULES / "checks.built"
    current = bool(built) and stamp.exists() and stamp.read_text().strip() == SOURCE._source_digest(str(RULES))
    assert installed.COMPILED is current
    if current:
        assert installed.__file__.endswith(".so")
