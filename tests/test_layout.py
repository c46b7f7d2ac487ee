"""The tree shows the layers: packages with a public face, no module over 600 lines, old paths kept by one table."""

import ast
import importlib
from pathlib import Path

import pytest

import ko_hf
from ko_hf._moved import MOVED_MODULES

ROOT = Path(ko_hf.__file__).parent
REPO = ROOT.parent
PACKAGES = ("card", "compare", "data", "run")
LIMIT = 600


def sources() -> list[Path]:
    return sorted([*ROOT.rglob("*.py"), *(REPO / "cli").glob("*.py")])


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_is_over_600_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= LIMIT, f"{path.relative_to(REPO)} has {lines} lines"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_lives_in_each_module_and_exports_its_names(package):
    init = ROOT / package / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    modules = sorted(p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__")
    assert doc and all(name in doc for name in modules), (package, [m for m in modules if m not in (doc or "")])
    module = importlib.import_module(f"ko_hf.{package}")
    assert module.__all__ and all(getattr(module, name) is not None for name in module.__all__)


def test_an_old_path_is_never_also_a_file_or_package():
    for old in MOVED_MODULES:
        relative = Path(*old.split(".")[1:])
        assert not (ROOT / relative).with_suffix(".py").exists() and not (ROOT / relative).is_dir(), old


def test_every_new_home_of_an_old_path_exists():
    for homes in MOVED_MODULES.values():
        for home in homes:
            importlib.import_module(home)
