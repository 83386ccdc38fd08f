"""A finished LoRA run made by the real trainer, as the launcher would leave it (for generate/compare/share tests)."""
from __future__ import annotations

import json
from pathlib import Path

from training.lora.cli import main

FAST = ["--set", "batch_size=2", "--set", "gradient_accumulation_steps=1", "--set", "sample_steps=2",
        "--set", "learning_rate=2e-3", "--set", "lr_warmup_steps=0", "--set", "checkpointing_steps=2",
        "--set", "validation_steps=4"]


def make_run(runs_root: Path, data: Path, name: str = "shapes", owner: str = "local", trigger: str = "sks",
             steps: int = 4, seed: int = 42) -> Path:
    """Train ``fashion/<name>`` for a few steps and record it as done and owned by ``owner``."""
    run_dir = runs_root / "fashion" / name
    code = main(["--preset", "fashion", "--data", str(data), "--output", str(run_dir), "--profile", "tiny",
                 "--max-steps", str(steps), "--set", f"trigger_word={trigger}", "--set", f"seed={seed}", *FAST])
    assert code == 0, (run_dir / "train.log").read_text()
    (run_dir / "request.json").write_text(json.dumps({"use_case": "fashion", "owner": owner, "max_steps": steps,
                                                      "created": "2026-01-01T00:00:00Z"}))
    # a finished trainer: a pid that cannot be alive, exit code 0
    (run_dir / "process.json").write_text(json.dumps({"pid": 2**22 + 7, "returncode": 0}))
    return run_dir
