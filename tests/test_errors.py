"""One error base: every error class of the project derives from ``t3al.cache.T3alError``, keeping
its other bases, and the command lines report it in one line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from t3al.cache import CacheError, T3alError

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("adapt", "cache", "evaluate", "extract", "localize", "manifests", "demo")
BUILTIN_BASES = {"Exception", "ValueError", "RuntimeError", "KeyError", "OSError", "TypeError", "ClickException"}


def _base_names(node: ast.ClassDef) -> set[str]:
    return {base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "") for base in node.bases}


def _exception_classes_outside_the_base() -> dict[str, set[str]]:
    """Each class that derives directly from a built-in exception (or click's), by file:class."""
    found = {}
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and _base_names(node) & BUILTIN_BASES:
                    found[f"{path.relative_to(REPO)}:{node.name}"] = _base_names(node)
    return found


def test_every_error_class_that_derives_from_a_builtin_also_derives_from_the_base():
    classes = _exception_classes_outside_the_base()
    assert "cache/errors.py:T3alError" in classes
    assert {name for name, bases in classes.items()
            if "T3alError" not in bases and name != "cache/errors.py:T3alError"} == set()


def test_errors_keep_their_other_bases_so_existing_handlers_still_catch_them():
    from t3al.adapt.engine.cluster import ClusterError
    from t3al.adapt.config import ConfigError
    from t3al.evaluate import EvaluationError
    from t3al.manifests import ManifestError

    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, T3alError)
    assert issubclass(EvaluationError, ValueError) and issubclass(ManifestError, ValueError)
    assert issubclass(ClusterError, RuntimeError) and issubclass(ClusterError, T3alError)
    assert issubclass(CacheError, T3alError)


def test_a_failing_command_of_the_demo_is_a_project_error_naming_the_command(tmp_path):
    from t3al.demo.cli import run_command
    from t3al.evaluate.cli import main as evaluate_main

    with pytest.raises(T3alError, match=r"^t3al-evaluate failed: .*nowhere\.json.* does not exist"):
        run_command("t3al-evaluate", evaluate_main, ["table", str(tmp_path / "nowhere.json")])


def test_the_extract_command_line_reports_any_project_error_in_one_line(tmp_path):
    from click.testing import CliRunner

    from t3al.extract.cli import main

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "cache.json").write_text("{not json")
    result = CliRunner().invoke(main, ["status", str(tmp_path / "cache")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
