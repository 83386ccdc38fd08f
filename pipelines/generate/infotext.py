"""Reading A1111-style ``parameters`` infotext back out of a PNG, for the PNG-info box and its restore button."""
from __future__ import annotations

import re
from typing import Any

from PIL import Image


class InfotextError(ValueError):
    """An image carries no generation parameters we can read."""


LORA_TAG = re.compile(r"\s*<lora:([^:>]+):([-+0-9.eE]+)>")
# "Key: value" pairs of the last line; a value may be a quoted string containing commas
SETTING = re.compile(r'\s*([\w \-/+]+):\s*("(?:[^"\\]|\\.)*"|[^,]*)(?:,|$)')


def read_parameters(image: Image.Image | None) -> str:
    """The ``parameters`` text chunk of an image; raises InfotextError in one sentence when there is none."""
    if image is None:
        raise InfotextError("Drop a PNG made by this hub or A1111 to read its parameters.")
    text = (image.info or {}).get("parameters")
    if not text:
        raise InfotextError("This image has no generation parameters (no A1111 'parameters' text in the PNG); "
                            "images saved by some sites and editors lose it.")
    return str(text)


def parse(text: str) -> dict[str, Any]:
    """Infotext → {prompt, negative_prompt, steps, sampler, cfg, seed, width, height, model, loras, raw}."""
    lines = text.strip().split("\n")
    settings_line = lines[-1] if len(lines) > 1 and "Steps:" in lines[-1] else ""
    body = lines[:-1] if settings_line else lines
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt = "\n".join(prompt_lines)
    loras = [(name, float(weight)) for name, weight in LORA_TAG.findall(prompt)]
    fields = {k.strip(): v.strip().strip('"') for k, v in SETTING.findall(settings_line) if k.strip()}
    width, _, height = fields.get("Size", "").partition("x")
    out: dict[str, Any] = {"prompt": LORA_TAG.sub("", prompt).strip(), "negative_prompt": "\n".join(negative_lines),
                           "sampler": fields.get("Sampler", ""), "model": fields.get("Model", ""),
                           "loras": loras, "lora_hashes": fields.get("Lora hashes", ""), "raw": fields}
    for key, name, kind in (("steps", "Steps", int), ("cfg", "CFG scale", float), ("seed", "Seed", int),
                            ("width", None, int), ("height", None, int)):
        value = fields.get(name) if name else (width if key == "width" else height)
        try:
            out[key] = kind(value) if value not in (None, "") else None
        except ValueError:
            out[key] = None
    if not settings_line:
        raise InfotextError("The image's parameters have no settings line (Steps, Sampler, CFG scale, Seed).")
    return out
