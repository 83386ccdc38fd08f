"""X/Y grids: planning (limits, fixed seed, search/replace, LoRA axes), a rendered grid with the toy judge, and
labels that stay legible and apart at any cell size."""
from __future__ import annotations

import itertools

import pytest
from PIL import Image

from pipelines.generate import xy_grid
from pipelines.generate.lora_files import LoraFile
from pipelines.generate.text_to_image import GenerateSettings, InputError

BASE = GenerateSettings("a red square on a white background", steps=3, width=64, height=64, seed=9)


def fake_lora(label):
    return LoraFile(path=None, name=label, format="kohya", trigger_word="", short_hash=label[-12:], metadata={})


def test_more_than_64_cells_is_one_sentence():
    with pytest.raises(InputError, match="9×8 = 72 cells; the limit is 64"):
        xy_grid.plan(BASE, "Seed", ",".join(map(str, range(9))), "CFG", ",".join(map(str, range(8))), fake_lora)


def test_seed_is_fixed_unless_it_is_an_axis():
    cells = xy_grid.plan(BASE, "Steps", "2, 3", "CFG", "1, 5", fake_lora)
    assert [(c.settings.steps, c.settings.cfg, c.settings.seed) for c in cells] == [
        (2, 1.0, 9), (3, 1.0, 9), (2, 5.0, 9), (3, 5.0, 9)]
    seeds = xy_grid.plan(BASE, "Seed", "1, 2", "Nothing", "", fake_lora)
    assert [c.settings.seed for c in seeds] == [1, 2]
    with pytest.raises(InputError, match="fixed seed"):
        xy_grid.plan(GenerateSettings("x", seed=-1), "Steps", "2", "Nothing", "", fake_lora)


def test_prompt_search_replace_and_lora_axes():
    cells = xy_grid.plan(BASE, "Prompt S/R", "red, blue", "LoRA", "none, fashion/a", fake_lora)
    assert [c.settings.prompt.split()[1] for c in cells] == ["red", "blue", "red", "blue"]
    assert [[f.name for f, _ in c.settings.loras] for c in cells] == [[], [], ["fashion/a"], ["fashion/a"]]
    steps = xy_grid.plan(BASE, "Checkpoint step", "2, final", "LoRA weight", "0.5", fake_lora, "fashion/a")
    assert [(c.settings.loras[0][0].name, c.settings.loras[0][1]) for c in steps] == [
        ("fashion/a@step-2", 0.5), ("fashion/a", 0.5)]
    with pytest.raises(InputError, match="needs a LoRA"):
        xy_grid.plan(BASE, "LoRA weight", "1", "Nothing", "", fake_lora)
    with pytest.raises(InputError, match="not a valid value for the Steps axis"):
        xy_grid.plan(BASE, "Steps", "many", "Nothing", "", fake_lora)
    with pytest.raises(InputError, match="'green', which is not in the prompt"):
        xy_grid.check_search_replace(BASE.prompt, "Prompt S/R", "green, blue", "Nothing", "")


def test_rendered_grid_is_labelled_and_has_a_judge_column(tiny_runtime):
    cells = xy_grid.plan(BASE, "Steps", "2, 4", "Prompt S/R", "red, blue", fake_lora)
    result = xy_grid.render(tiny_runtime, cells, "Steps", "Prompt S/R")
    assert len(result.images) == 4 and all(im.size == (64, 64) for im in result.images)
    w, h = result.grid.size
    assert w > 2 * 64 and h > 2 * 64  # label margins around the 2×2 cells
    assert result.captions[0].startswith("2 · red: ") and result.captions[3].startswith("4 · blue: ")
    assert all(c.rstrip().endswith(("✓", "✗")) for c in result.captions)
    # same seed in every cell: only the axes differ, so equal settings give equal pixels
    again = xy_grid.render(tiny_runtime, cells[:1]).images[0]
    assert again.tobytes() == result.images[0].tobytes()


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


@pytest.mark.parametrize("side", [64, 512])
def test_axis_names_values_and_captions_are_printed_legibly_apart_at_any_cell_size(side):
    xs, ys = ["none", "fashion/first-try@step-200", "1.5"], ["20", "a longer prompt replacement"]
    captions = ["purple triangle on gray ✓", "red circle on white ✗", "? ? on black"] * 2
    images = [Image.new("RGB", (side, side), (40 * k, 180, 60)) for k in range(6)]
    grid = xy_grid.grid_image(images, xs, ys, captions, "LoRA", "Steps")
    plan = xy_grid.layout((side, side), xs, ys, captions, "LoRA", "Steps")
    assert grid.size == plan.size and plan.font_size >= xy_grid.MIN_FONT >= 13  # readable next to a 64-px cell
    assert sorted(" ".join(label.lines) for label in plan.labels) == sorted([*xs, *ys, *captions, "LoRA", "Steps"])
    inks = [xy_grid.text_box(label, plan.font_size, plan.line_height) for label in plan.labels]
    cells = [(x, y, x + side, y + side) for x, y in plan.cells]
    for ink, label in zip(inks, plan.labels):
        assert inside(ink, label.band) and inside(label.band, (0, 0, *grid.size)), (label, ink)
        assert min(grid.convert("L").crop(ink).getdata()) < 100  # the text is there, in black
    for a, b in itertools.combinations(inks + cells, 2):
        assert not overlap(a, b), (a, b)
    for image, (x, y) in zip(images, plan.cells):  # nothing is drawn over a cell
        assert grid.crop((x, y, x + side, y + side)).tobytes() == image.tobytes()
