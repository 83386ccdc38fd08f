"""X/Y grids: one base setting varied along two axes, every cell generated at the same seed, one labelled image."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable

from PIL import Image, ImageDraw, ImageFont

from pipelines.generate.lora_files import LoraFile
from pipelines.models.runtime import Runtime
from pipelines.generate.text_to_image import GenerateSettings, InputError, run

log = logging.getLogger(__name__)

MAX_CELLS = 64
AXES = ("Nothing", "LoRA", "LoRA weight", "Checkpoint step", "Steps", "CFG", "Seed", "Prompt S/R")
NO_LORA = "none"
# Seed 001 compares 20/30/50 steps; seed 004 compares checkpoints of one DreamBooth run.
PRESETS = {"Steps 20/30/50 (seed 001)": ("Steps", "20, 30, 50", "Nothing", ""),
           "Checkpoints (seed 004)": ("Checkpoint step", "", "LoRA weight", "0.5, 1")}


@dataclass
class Cell:
    x: str
    y: str
    settings: GenerateSettings


def split_values(text: str) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def plan(base: GenerateSettings, x_axis: str, x_values: str, y_axis: str, y_values: str,
         lora_for: Callable[[str], LoraFile], base_lora: str = "") -> list[Cell]:
    """Every (x, y) cell's settings, row by row. ``lora_for`` turns a LoRA label into a checked file.

    ``base_lora`` is the LoRA the weight and checkpoint axes act on. The seed stays fixed unless it is an axis.
    """
    xs, ys = _values(x_axis, x_values, base_lora), _values(y_axis, y_values, base_lora)
    if len(xs) * len(ys) > MAX_CELLS:
        raise InputError(f"The grid has {len(xs)}×{len(ys)} = {len(xs) * len(ys)} cells; the limit is {MAX_CELLS}, "
                         "so use fewer values.")
    if x_axis == y_axis and x_axis != "Nothing":
        raise InputError(f"X and Y are both {x_axis}; pick two different axes.")
    if base.seed == -1:
        raise InputError("Give a fixed seed for a grid so the cells differ only along the axes.")
    cells = []
    for y in ys:
        for x in xs:
            s = replace(base, loras=list(base.loras), num_images=1, batch_count=1)
            state = {"lora": base_lora, "weight": 1.0, "find": {x_axis: xs[0], y_axis: ys[0]}}
            for axis, value in ((x_axis, x), (y_axis, y)):
                s = _apply(s, axis, value, state)
            if state["lora"] and state["lora"] != NO_LORA:
                s.loras = [(lora_for(state["lora"]), state["weight"])]
            elif state["lora"] == NO_LORA:
                s.loras = []
            cells.append(Cell(x, y, s))
    return cells


def _values(axis: str, text: str, base_lora: str) -> list[str]:
    if axis not in AXES:
        raise InputError(f"Axis must be one of {', '.join(AXES)}, not {axis!r}.")
    if axis == "Nothing":
        return [""]
    values = split_values(text)
    if not values:
        raise InputError(f"Give at least one value for the {axis} axis, separated by commas.")
    if axis in ("LoRA weight", "Checkpoint step") and not base_lora:
        raise InputError(f"The {axis} axis needs a LoRA to act on; pick one under 'LoRA for the axes'.")
    return values


def _apply(s: GenerateSettings, axis: str, value: str, state: dict) -> GenerateSettings:
    try:
        if axis == "Steps":
            return replace(s, steps=int(value))
        if axis == "CFG":
            return replace(s, cfg=float(value))
        if axis == "Seed":
            return replace(s, seed=int(value))
        if axis == "LoRA weight":
            state["weight"] = float(value)
        if axis == "LoRA":
            state["lora"] = value
        if axis == "Checkpoint step":
            run = state["lora"].split("@")[0]
            state["lora"] = run if value in ("final", "") else f"{run}@step-{value.removeprefix('step-')}"
    except ValueError:
        raise InputError(f"{value!r} is not a valid value for the {axis} axis.") from None
    if axis == "Prompt S/R":
        # A1111's rule: the first value is the text to find, each value replaces it in turn.
        return replace(s, prompt=s.prompt.replace(state["find"][axis], value))
    return s


def check_search_replace(prompt: str, x_axis: str, x_values: str, y_axis: str, y_values: str) -> None:
    for axis, values in ((x_axis, x_values), (y_axis, y_values)):
        if axis == "Prompt S/R" and split_values(values) and split_values(values)[0] not in prompt:
            raise InputError(f"Prompt S/R looks for {split_values(values)[0]!r}, which is not in the prompt.")


def grid_image(images: list[Image.Image], xs: list[str], ys: list[str], captions: list[str] | None = None,
               x_title: str = "", y_title: str = "") -> Image.Image:
    """The cells in rows with column labels on top, row labels on the left and an optional caption under each."""
    w, h = images[0].size
    font = ImageFont.load_default(size=max(10, w // 8))
    label_h = font.size + 8
    label_w = max((int(font.getlength(y)) for y in ys if y), default=0) + (12 if any(ys) else 0)
    caption_h = label_h if captions else 0
    cols, rows = len(xs), len(ys)
    top = label_h if any(xs) else 0
    grid = Image.new("RGB", (label_w + cols * w, top + rows * (h + caption_h)), "white")
    draw = ImageDraw.Draw(grid)
    for c, x in enumerate(xs):
        draw.text((label_w + c * w + w / 2, top / 2), x, fill="black", font=font, anchor="mm")
    for r, y in enumerate(ys):
        draw.text((label_w / 2, top + r * (h + caption_h) + h / 2), y, fill="black", font=font, anchor="mm")
        for c in range(cols):
            k = r * cols + c
            grid.paste(images[k], (label_w + c * w, top + r * (h + caption_h)))
            if captions:
                draw.text((label_w + c * w + w / 2, top + r * (h + caption_h) + h + caption_h / 2), captions[k],
                          fill="black", font=ImageFont.load_default(size=max(8, w // 10)), anchor="mm")
    return grid


@dataclass
class GridResult:
    grid: Image.Image
    images: list[Image.Image]
    captions: list[str]  # per cell: its axis values, and the toy judge's verdict in the tiny profile
    warnings: list[str]


def verdict(image: Image.Image, prompt: str) -> str:
    """The toy judge's reading of a tiny-profile image and whether it matches the prompt's scene."""
    from pipelines import toy_world

    v = toy_world.judge(image)
    wanted = [w for w in prompt.split() if w in toy_world.COLORS or w in toy_world.SHAPES]
    seen = f"{v.color or '?'} {v.shape or '?'} on {v.background}"
    ok = all(w in (v.color, v.shape) for w in wanted)
    return f"{seen} {'✓' if ok and wanted else '✗' if wanted else ''}".strip()


def render(runtime: Runtime, cells: list[Cell], x_axis: str = "", y_axis: str = "") -> GridResult:
    """Generate every cell (LoRAs of the grid stay loaded while it runs) and lay out the labelled grid."""
    keep = list({f.adapter_name: f for c in cells for f, _ in c.settings.loras}.values())
    images, captions, warnings = [], [], []
    judge = runtime.profile.name == "tiny"
    for cell in cells:
        result = run(runtime, cell.settings, keep_loras=keep)
        images.append(result.images[0])
        warnings += [w for w in result.warnings if w not in warnings]
        label = " · ".join(v for v in (cell.x, cell.y) if v)
        captions.append(f"{label}: {verdict(result.images[0], cell.settings.prompt)}" if judge else label)
    xs = list(dict.fromkeys(c.x for c in cells))
    ys = list(dict.fromkeys(c.y for c in cells))
    cell_captions = [c.split(": ", 1)[1] for c in captions] if judge else None
    grid = grid_image(images, xs, ys, cell_captions, x_axis, y_axis)
    return GridResult(grid, images, captions, warnings)
