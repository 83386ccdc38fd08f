"""X/Y grids: one base setting varied along two axes, every cell generated at the same seed, one labelled image."""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
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


PAD = 6  # pixels between a label and the edge of its band
# Label sizes: legible next to a 64-pixel cell, in proportion next to a large one.
MIN_FONT, MAX_FONT = 13, 36
# Pillow's built-in font has no ✓ or ✗; DejaVu Sans (shipped with matplotlib, and on most systems) has both.
MARKS = {"✓": "(yes)", "✗": "(no)"}


@lru_cache(maxsize=None)
def _font(size: int) -> tuple[ImageFont.FreeTypeFont, bool]:
    """A font of ``size`` pixels and whether it draws ✓ and ✗."""
    spec = importlib.util.find_spec("matplotlib")  # its font file, without importing matplotlib
    places = [Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"] if spec else []
    for place in [*places, "DejaVuSans.ttf"]:
        try:
            return ImageFont.truetype(str(place), size), True
        except OSError:
            continue
    return ImageFont.load_default(size=size), False


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Words in lines no wider than ``width`` (a word wider than that gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


@dataclass(frozen=True)
class Label:
    lines: list[str]
    band: tuple[int, int, int, int]  # (left, top, right, bottom): the lines are centred in it, never outside


@dataclass
class GridLayout:
    """Where a grid's cells and labels go: cells never under a label, labels never on each other."""
    size: tuple[int, int]
    font_size: int
    line_height: int
    cells: list[tuple[int, int]]  # top-left corner of each image, row by row
    labels: list[Label]


def layout(cell: tuple[int, int], xs: list[str], ys: list[str], captions: list[str] | None = None,
           x_title: str = "", y_title: str = "") -> GridLayout:
    """Where cells of size ``cell``, the axes' names and values and each cell's caption go on the grid."""
    # Columns widen to fit the widest word and every band grows to fit its wrapped lines, so no text is cut,
    # shrunk below MIN_FONT or drawn over a cell or another text, whatever the cell size.
    w, h = cell
    size = max(MIN_FONT, min(MAX_FONT, w // 14))
    font, _ = _font(size)
    line = round(size * 1.3)
    words = [word for text in (*xs, *(captions or []), x_title) for word in text.split()]
    col_w = max(w, *(round(font.getlength(word)) + 2 * PAD for word in words or [""]))
    cols, rows = len(xs), len(ys)
    x_lines = [_wrap(x, font, col_w - 2 * PAD) for x in xs]
    title_lines = _wrap(x_title, font, cols * col_w - 2 * PAD)
    left_words = [word for text in (*ys, y_title) for word in text.split()]
    left_w = 0
    if left_words:
        widest = max(round(font.getlength(text)) for text in (*ys, y_title))
        left_w = max(min(widest, col_w), *(round(font.getlength(word)) for word in left_words)) + 2 * PAD
    y_lines = [_wrap(y, font, left_w - 2 * PAD) for y in ys]
    corner_lines = _wrap(y_title, font, left_w - 2 * PAD)
    title_h = len(title_lines) * line + 2 * PAD if title_lines else 0
    values_h = max(map(len, x_lines)) * line + 2 * PAD if any(xs) else 0
    top = max(title_h + values_h, len(corner_lines) * line + 2 * PAD if corner_lines else 0)
    caption_lines = [_wrap(c, font, col_w - 2 * PAD) for c in captions] if captions else [[]] * (cols * rows)
    labels = [Label(title_lines, (left_w, 0, left_w + cols * col_w, title_h))] if title_lines else []
    labels += [Label(corner_lines, (0, 0, left_w, top))] if corner_lines else []
    labels += [Label(lines, (left_w + c * col_w, top - values_h, left_w + (c + 1) * col_w, top))
               for c, lines in enumerate(x_lines) if lines]
    cells, y = [], top
    for r in range(rows):
        row_captions = caption_lines[r * cols:(r + 1) * cols]
        caption_h = max(map(len, row_captions)) * line + 2 * PAD if any(row_captions) else 0
        row_h = max(h + caption_h, len(y_lines[r]) * line + 2 * PAD)
        if y_lines[r]:
            labels.append(Label(y_lines[r], (0, y, left_w, y + row_h)))
        for c in range(cols):
            left = left_w + c * col_w
            cells.append((left + (col_w - w) // 2, y))
            if row_captions[c]:
                labels.append(Label(row_captions[c], (left, y + h, left + col_w, y + h + caption_h)))
        y += row_h
    return GridLayout((left_w + cols * col_w, y), size, line, cells, labels)


def _placed(label: Label, font_size: int, line_height: int) -> list[tuple[tuple[float, float], str]]:
    """(centre, text) of each of ``label``'s lines, centred in its band, as the font can draw them."""
    left, top, right, bottom = label.band
    first = (top + bottom) / 2 - (len(label.lines) - 1) * line_height / 2
    marks = _font(font_size)[1]
    return [(((left + right) / 2, first + i * line_height), _printable(text, marks))
            for i, text in enumerate(label.lines)]


def text_box(label: Label, font_size: int, line_height: int) -> tuple[int, int, int, int]:
    """Where ``label``'s ink lands when drawn."""
    draw, font = ImageDraw.Draw(Image.new("1", (1, 1))), _font(font_size)[0]
    boxes = [draw.textbbox(xy, text, font=font, anchor="mm") for xy, text in _placed(label, font_size, line_height)]
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _printable(text: str, marks: bool) -> str:
    return text if marks else "".join(MARKS.get(ch, ch) for ch in text)


def grid_image(images: list[Image.Image], xs: list[str], ys: list[str], captions: list[str] | None = None,
               x_title: str = "", y_title: str = "") -> Image.Image:
    """The cells in rows, the X axis's name and values on top, the Y axis's at the left, a caption under each."""
    plan = layout(images[0].size, xs, ys, captions, x_title, y_title)
    grid = Image.new("RGB", plan.size, "white")
    for image, corner in zip(images, plan.cells):
        grid.paste(image, corner)
    draw, font = ImageDraw.Draw(grid), _font(plan.font_size)[0]
    for label in plan.labels:
        for xy, text in _placed(label, plan.font_size, plan.line_height):
            draw.text(xy, text, fill="black", font=font, anchor="mm")
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
