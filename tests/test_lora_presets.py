"""Presets: the seeds' values in the full profile, the toy world's in tiny (issue 14, point 5)."""
from __future__ import annotations

import pytest

from pipelines.models.toy_tokenizer import world_words
from training.lora.settings import PRESETS_DIR, resolve_settings

PRESETS = sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def test_a_presets_tiny_table_applies_in_tiny_only_and_the_users_values_win():
    full, tiny = resolve_settings("dreambooth"), resolve_settings("dreambooth", profile="tiny")
    assert full.instance_prompt == "a photo of sks person" and full.max_steps == 3000  # seed 004
    assert "square" in tiny.instance_prompt and tiny.max_steps < 1000
    assert resolve_settings("dreambooth", {"max_steps": "7"}, "tiny").max_steps == 7


@pytest.mark.parametrize("preset", PRESETS)
def test_tiny_prompts_are_words_the_toy_model_knows(preset):
    s = resolve_settings(preset, profile="tiny")
    known = set(world_words()) | set(s.trigger_word.lower().split())
    prompts = [*s.validation_prompts, s.instance_prompt, s.class_prompt] if s.with_prior_preservation else \
        s.validation_prompts
    assert prompts
    for prompt in prompts:
        assert set(prompt.lower().split()) <= known, (preset, prompt)
