"""The architecture rules that the folder list promises."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> set[str]:
    names: set[str] = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def _t3al_modules(folder: str) -> set[str]:
    """The t3al modules that the files of ``folder`` import, relative imports resolved
    (``from .cli import x`` in adapt/ is t3al.adapt.cli, ``from t3al.adapt import cli`` too)."""
    names: set[str] = set()
    for path in (REPO / folder).rglob("*.py"):
        package = ["t3al", *path.relative_to(REPO).parent.parts]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] if node.level else [])
                module = ".".join(part for part in (base, node.module or "") if part)
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == "t3al" or name.startswith("t3al.")}


def test_stage_two_never_imports_the_front_door():
    assert not {m for m in _t3al_modules("adapt") if m.startswith("t3al.localize")}


def test_the_algorithm_never_imports_what_runs_it():
    """adapt/algorithm/ (the method on a video or a batch) knows nothing of the engine that plans
    and spreads its work, nor of the command lines."""
    running = ("t3al.adapt.engine", "t3al.adapt.cli", "t3al.adapt.sweep_cli", "t3al.adapt.options")
    assert not {m for m in _t3al_modules("adapt/algorithm") if m.startswith(running)}


def test_the_front_door_imports_no_other_command_line():
    """localize/ calls the Python functions of stages one and two, never their command modules."""
    assert not _t3al_modules("localize") & {"t3al.adapt.cli", "t3al.adapt.sweep_cli", "t3al.extract.cli"}


def test_the_module_walk_sees_relative_and_absolute_imports():
    assert {"t3al.adapt.options", "t3al.adapt.engine.spec"} <= _t3al_modules("adapt")
    assert "t3al.extract.folder" in _t3al_modules("localize")


def test_stage_two_never_imports_open_clip():
    assert "open_clip" not in _imports("adapt")


@pytest.mark.parametrize("folder", ["adapt", "evaluate", "extract", "manifests", "demo", "localize", "benchmarks"])
def test_only_the_cache_package_touches_hdf5(folder):
    assert "h5py" not in _imports(folder)


def _markup_strings(path: Path) -> list[str]:
    """String constants of a module that hold an HTML tag, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    names = r"(html|head|body|div|span|p|a|img|table|tr|td|th|h[1-6]|meta|script|style|pre|section|ul|li|svg)"
    tag = re.compile(rf"<!doctype|</{names}>|<{names}\s+[\w-]+=", re.IGNORECASE)  # "<table>" alone may be a placeholder
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and tag.search(node.value)]


@pytest.mark.parametrize("folder", ["adapt", "cache", "evaluate", "extract", "manifests", "demo", "localize",
                                    "benchmarks"])
def test_no_page_is_built_from_strings_only_from_templates(folder):
    """Every HTML page comes from an autoescaping template (evaluate/pages.py): no markup in code."""
    found = {str(path.relative_to(REPO)): _markup_strings(path) for path in (REPO / folder).rglob("*.py")}
    assert {name: strings for name, strings in found.items() if strings} == {}


def test_folders_are_installed_under_t3al_only(tmp_path):
    """From outside the checkout, `t3al.cache` imports and a bare `cache` does not come from us."""
    code = (
        "import importlib.util as u\n"
        "for name in ('cache', 'adapt', 'evaluate', 'extract', 'manifests', 'demo', 'localize'):\n"
        "    assert u.find_spec('t3al.' + name) is not None, name\n"
        "    spec = u.find_spec(name)\n"
        f"    assert spec is None or not str(spec.origin).startswith({str(REPO)!r}), name\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


@pytest.mark.parametrize("module", ["extract.cli", "demo.cli", "adapt.cli", "adapt.sweep_cli", "evaluate.cli",
                                    "manifests.cli", "extract.status"])
def test_command_lines_import_neither_torch_nor_open_clip(module):
    """torch and open_clip load inside the commands, once needed, so --help and the one-line errors
    answer in well under a second."""
    code = (f"import sys, t3al.{module}; "
            "print(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_an_adapt_error_before_the_work_imports_no_torch(tmp_path):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom t3al.adapt.cli import main\n"
            f"result = CliRunner().invoke(main, [{str(tmp_path / 'nowhere')!r}])\n"
            "print(result.exit_code, 'torch' in sys.modules, result.output.strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("1 False Error: ") and "no such cache directory" in out


@pytest.mark.parametrize("target", ["test", "demo"])
def test_make_targets_install_what_they_need_first(target, tmp_path):
    """On a fresh machine (no torch importable) the pinned torch comes first, then t3al, then (make
    test only) its test tools, whose transformers<4.56 make demo must not impose; TORCH= leaves
    torch to the user (another CUDA build)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    python = str(tmp_path / "fresh-python")  # not a Python: nothing is importable with it

    def plan(*args: str) -> list[str]:
        return subprocess.run(["make", "-n", "--no-print-directory", "-C", str(REPO), f"PYTHON={python}", *args, target],
                              capture_output=True, text=True, check=True).stdout.splitlines()

    lines = plan()
    assert lines[0] == f"{python} -m pip install torch==2.14.1 torchvision==0.29.1"
    assert lines[1] == f"{python} -m pip install -e ."
    assert [line for line in lines if "[test]" in line] == ([f"{python} -m pip install -e '.[test]'"]
                                                            if target == "test" else [])
    assert not any("torch" in line for line in plan("TORCH="))
