"""The one-way arrows app → tabs → training → pipelines: inference never needs the trainers or the UI."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, including those inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package, forbidden", [("pipelines", {"training", "gradio", "tabs", "app"}),
                                                ("training", {"gradio", "tabs", "app"})])
def test_a_lower_layer_never_imports_a_higher_one(package, forbidden):
    offences = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                for path in sorted((ROOT / package).rglob("*.py"))
                for line, module in imported_modules(path) if module.split(".")[0] in forbidden]
    assert not offences, "\n".join(offences)


def test_the_walk_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from training.lora import settings\n")
    assert imported_modules(probe) == [(2, "training.lora")]


@pytest.mark.parametrize("module", ["training.lora", "training.anime", "training.prepare", "training.toy"])
def test_the_commands_of_run_folders_written_before_the_move_still_start(module):
    """request.json of older runs names these modules (``module``, or none for the LoRA trainer)."""
    import subprocess
    import sys

    from training.runs.launcher import build_command

    command = build_command(sys.executable, {"module": module if module != "training.lora" else None,
                                             "args": ["--help"]})
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
