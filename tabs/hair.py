"""The Hair tab (seed 000): try other hair on a portrait (API ``hair_tryon``), the face kept by construction.

The automatic hair mask appears over the portrait in an editor where it can be painted and erased; an uploaded mask
replaces it. Models: the ``hair`` role's default (the toy in the tiny profile), models exported on the server, the
caller's own hair runs and the hair repos they pulled (``pipelines/hair/catalogue.py``).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from pipelines.generate import outputs
from pipelines.models.gpu import GPU_CONCURRENCY_ID, on_gpu
from pipelines.models.runtime import Runtime
from tabs.common import outputs_root, owner_of, pulled_folder, user_errors
from tabs.generate import private_owner
from tabs.image_file import ImageFile

log = logging.getLogger(__name__)

USE_CASE = "hair"
KEEP = "keep"
ATTRIBUTES = ("color", "curl", "length", "bang", "basestyle")  # the menus, in the API's order after length
MASK_RGBA = (255, 40, 40, 140)  # how the mask is drawn over the portrait in the editor
EDITOR_SIDE = 512  # the automatic mask is computed on the portrait shrunk to this side, then scaled back
DEFAULT_LABEL, TOY_DEFAULT_LABEL = "Default model", "Default model (toy)"
TOY_NOTE = ("Tiny profile: the default hair model is a toy, trained in about an hour on a CPU on 64 px toy portraits "
            "(a skin ellipse under striped or checked hair in six colours). Upload one of the example portraits; it "
            "does not paint real hair. The SDXL model runs in the full profile on a GPU.")
NO_DEFAULT_NOTE = ("No default hair model is published for this profile: train one (`python -m training.hair all`), "
                   "export it, or start Atelier with `--model hair=OWNER/REPO`.")


RIGHTS_LABEL = "I have the right to use these photos"


class HairFormError(ValueError):
    """A Hair tab value is refused; the message says which and why."""


def menu(attribute: str) -> list[str]:
    """A menu's choices: "keep", then the vocabulary's English values."""
    from pipelines.hair.vocabulary import load

    return [KEEP, *load().values(attribute)]


def overlay(image: Image.Image, mask: np.ndarray) -> np.ndarray:
    """The mask as an RGBA layer for the editor: red where the model repaints, clear elsewhere."""
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = MASK_RGBA
    return layer


def layer_mask(editor: dict | None) -> np.ndarray | None:
    """The painted pixels of the editor's first layer (True = repaint), or None when there is no portrait or layer."""
    if not editor or editor.get("background") is None or not editor.get("layers"):
        return None
    layer = np.asarray(editor["layers"][0])
    return layer[..., 3] > 0 if layer.ndim == 3 and layer.shape[-1] == 4 else np.asarray(layer) > 0


def make_handlers(manager, runtime: Runtime):
    """The tab's plain handlers: (choices, auto_mask, mask_of, hair_tryon)."""

    def entries(request: gr.Request | None):
        from pipelines.hair import catalogue

        default = None
        if runtime.ref("hair").ref:
            default = TOY_DEFAULT_LABEL if runtime.profile.name == "tiny" else DEFAULT_LABEL
        runs = [(r.name, manager.find(r.id, owner_of(request))) for r in manager.list_runs(owner_of(request))
                if r.use_case == USE_CASE]
        return catalogue.entries(default, runs, pulled_folder(manager, private_owner(request), USE_CASE))

    def choices(request: gr.Request = None) -> dict[str, Any]:
        """The model dropdown's choices for the caller."""
        found = [(e.label, e.value) for e in entries(request)]
        return gr.update(choices=found, value=found[0][1] if found else None)

    @functools.lru_cache(maxsize=1)  # one base in memory: an SDXL pipeline is several GB
    def tryon_for(path: str, mtime: float):
        from pipelines.hair.service import HairTryOn

        return HairTryOn(runtime, Path(path))

    def model_file(model: str, request: gr.Request | None) -> Path:
        from pipelines.hair.catalogue import DEFAULT

        if not model or model == DEFAULT:
            return Path(runtime.model("hair"))  # shipped in tiny, fetched once for a hub id
        if model not in {e.value for e in entries(request)}:
            raise HairFormError(f"The hair model {model} is not one of yours; pick one from the Model menu.")
        return Path(model)

    @user_errors
    def auto_mask(portrait: str | None, grow: int = 0) -> dict | None:
        """The editor's value for a new portrait: the portrait with its automatic hair mask as a layer."""
        from pipelines.hair.service import MAX_INPUT_PIXELS, TryOnError, automatic_mask
        from pipelines.images import shrink_to, user_image

        if portrait is None:
            return None
        image = user_image(portrait, "portrait", MAX_INPUT_PIXELS, TryOnError)
        small = shrink_to(image, EDITOR_SIDE)
        mask = automatic_mask(runtime.model("hair_segmenter"), small, int(grow or 0))
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)) > 0
        if not mask.any():
            gr.Warning("No hair was found automatically; paint the hair in the mask editor or upload a mask.")
        return {"background": np.asarray(image), "layers": [overlay(image, mask)], "composite": None}

    @user_errors
    def mask_of(editor: dict | None, uploaded: str | None) -> Image.Image | None:
        """The mask to send to ``hair_tryon``: an uploaded mask (white = repaint), else the editor's layer."""
        from pipelines.hair.service import MAX_INPUT_PIXELS, TryOnError
        from pipelines.images import user_image

        if uploaded:
            return user_image(uploaded, "mask", MAX_INPUT_PIXELS, TryOnError).convert("L")
        painted = layer_mask(editor)
        return None if painted is None else Image.fromarray(painted.astype(np.uint8) * 255)

    @user_errors
    @on_gpu
    def hair_tryon(portrait: str | None, color: str = "", curl: str = "", length: str = "",
                   reference: str | None = None, mask: Image.Image | None = None, seed: int = 0, bang: str = "",
                   basestyle: str = "", text: str = "", grow: int = 0, style_strength: float = 1.0,
                   identity_strength: float = 1.0, steps: int = 20, cfg: float = 7.5, model: str = "default",
                   request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
        """The portrait with other hair: (result, mask used with white = repainted, identity cosine, details).

        ``color``, ``curl``, ``length``, ``bang``, ``basestyle``: English or Korean values, "" or "keep" keeps the
        portrait's own; ``mask``: white = repaint (None: the automatic hair mask); ``seed`` -1: a random one.
        """
        from pipelines.hair.service import Request

        file = model_file(model, request)
        values = {name: "" if str(v or "").strip() == KEEP else str(v or "") for name, v in
                  zip(ATTRIBUTES, (color, curl, length, bang, basestyle))}
        for name, value in (("steps", steps), ("seed", seed), ("grow", grow)):
            if value is None or int(value) != value:
                raise HairFormError(f"{name.capitalize()} must be a whole number, not {value}.")
        if not 1 <= int(steps) <= 150:
            raise HairFormError(f"Steps must be between 1 and 150, not {steps}.")
        tryon = tryon_for(str(file), file.stat().st_mtime)
        result = tryon(Request(portrait, **values, text=text or "", reference=reference,
                               mask=None if mask is None else np.asarray(mask.convert("L")), grow=int(grow),
                               style_strength=float(style_strength), identity_strength=float(identity_strength),
                               steps=int(steps), guidance=float(cfg), seed=int(seed)))
        for note in result.notes:
            gr.Warning(note)
        outputs.save([result.image], outputs_root(manager), private_owner(request))
        details = {"seed": result.seed, "prompt": result.prompt, "notes": result.notes, "model": tryon.describe()}
        return result.image, result.mask, round(result.identity, 4), details

    return choices, auto_mask, mask_of, hair_tryon


def make_train_handler(manager, runtime: Runtime, data_roots: tuple[Path, ...] = ()):
    """The ``hair_train`` endpoint: the one-command hair pipeline as a run (stages, losses, samples in Runs)."""
    from tabs.train import dataset_folder
    from training.runs.launcher import clean_run_name

    @user_errors
    def hair_train(data_dir: str = "", data_zip: str | None = None, run_name: str = "",
                   settings: dict[str, Any] | None = None, rights_confirmed: bool = False,
                   request: gr.Request = None) -> str:
        """Start or queue a hair run on a folder (or ZIP) holding images/ and labels/ (K-Hairstyle layout).

        ``settings``: ``{"inpaint.max_steps": 500, "texture.steps": 200, ...}``, each stage's own settings.
        """
        owner = owner_of(request)
        if not rights_confirmed:
            raise HairFormError(f"Tick “{RIGHTS_LABEL}” before training on photos of people.")
        clean_run_name(run_name, USE_CASE)
        data = dataset_folder(manager, owner, data_dir, data_zip, run_name, data_roots)
        overrides = {str(k): str(v) for k, v in (settings or {}).items()}
        status = manager.status(manager.submit(USE_CASE, run_name, data, overrides, owner, runtime.profile.name))
        verb = "Queued" if status.state == "queued" else "Started"
        return (f"{verb} **{status.id}** (prepare → texture → inpaint → evaluate, {status.max_steps} training steps). "
                "Follow it in the Runs tab; its model joins the Model menu when the inpaint stage ends.")

    return hair_train


def train_settings(profile: str, texture_steps: Any, inpaint_steps: Any, rank: Any, learning_rate: Any) -> dict:
    """The Train form's values that differ from the stages' defaults for ``profile``, as ``hair_train`` takes them."""
    from training.hair.settings import inpaint_settings, texture_settings

    texture, inpaint = texture_settings(), inpaint_settings(None, profile)
    values = {"texture.steps": (texture_steps, texture.steps), "inpaint.max_steps": (inpaint_steps, inpaint.max_steps),
              "inpaint.rank": (rank, inpaint.rank), "inpaint.learning_rate": (learning_rate, inpaint.learning_rate)}
    return {k: v for k, (v, default) in values.items() if v is not None and v != default}


def show_details(portrait: str | None, result: Image.Image | None, details: dict | None):
    """The A/B slider's pair and the text under the result."""
    if result is None or not details:
        return None, ""
    original = Image.open(portrait).convert("RGB").resize(result.size) if portrait else result
    model = details["model"]
    verdict = {"true": "passed the gate", "false": "failed the gate"}.get(model.get("gate_passed") or "", "")
    lines = [f"**Seed** {details['seed']} · **prompt** “{details['prompt']}”",
             f"**Model** {model['name']}" + (f" ({verdict}{', exported with --force' if model['forced'] else ''})"
                                             if verdict else ""), *details["notes"]]
    return (original, result), "\n\n".join(lines)


def _inputs_column(default: list[tuple[str, str]], profile: str):
    if not default:
        gr.Markdown(NO_DEFAULT_NOTE)
    elif default[0][0] == TOY_DEFAULT_LABEL:
        gr.Markdown(TOY_NOTE, elem_id="hair-toy-note")
    model = gr.Dropdown(label="Model", choices=default, value=default[0][1] if default else None,
                        allow_custom_value=True, elem_id="hair-model")
    refresh = gr.Button("Refresh models", size="sm")
    portrait = ImageFile(label="Portrait", type="filepath", sources=["upload", "webcam", "clipboard"],
                         elem_id="hair-portrait")
    editor = gr.ImageEditor(label="Hair mask: red is repainted (paint or erase it)", type="numpy", sources=(),
                            layers=False, transforms=(), brush=gr.Brush(colors=["#ff2828"], color_mode="fixed"),
                            elem_id="hair-mask-editor")
    with gr.Row():
        grow = gr.Slider(0, 64, value=0, step=1, label="Grow mask (px, for longer hair)")
        uploaded = ImageFile(label="…or upload a mask (white = repaint)", type="filepath", elem_id="hair-mask-upload")
    with gr.Row():
        # custom values: API callers may send the Korean value or "" (keep); the try-on checks every value
        menus = {name: gr.Dropdown(menu(name), value=KEEP, label=name.capitalize(), allow_custom_value=True,
                                   elem_id=f"hair-{name}") for name in ATTRIBUTES}
    text = gr.Textbox("", label="More words for the prompt", elem_id="hair-text")
    reference = ImageFile(label="Reference hair photo (optional: its hair gives the style)", type="filepath",
                          elem_id="hair-reference")
    with gr.Accordion("Sampling settings", open=False):
        style = gr.Slider(0, 2, value=1, step=0.05, label="Style strength")
        identity = gr.Slider(0, 2, value=1, step=0.05, label="Identity strength")
        steps = gr.Slider(1, 100, value=20 if profile == "tiny" else 30, step=1, label="Steps")
        cfg = gr.Slider(1, 15, value=7.5, step=0.5, label="CFG scale")
        seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id="hair-seed")
    return model, refresh, portrait, editor, grow, uploaded, menus, text, reference, style, identity, steps, cfg, seed


def _train_section(hair_train, profile: str) -> None:
    from training.hair.settings import inpaint_settings, texture_settings

    texture, inpaint = texture_settings(), inpaint_settings(None, profile)
    gr.Markdown("Runs seed 000's pipeline on your K-Hairstyle data: prepare (masks, faces, English prompts) → texture "
                "encoder → the inpainting model → evaluation against the gate (identity > 0.90, masked LPIPS < 0.20). "
                "The folder or ZIP must hold `images/` and `labels/` (one JSON per image).")
    with gr.Row():
        with gr.Column():
            data_dir = gr.Textbox(label="Dataset folder on the server (with images/ and labels/)",
                                  elem_id="hair-train-folder")
            data_zip = gr.File(label="…or a ZIP of images/ and labels/", file_types=[".zip"], type="filepath")
            run_name = gr.Textbox(label="Run name", placeholder="letters, digits, - and _ (empty: hair + date)")
            rights = gr.Checkbox(label=RIGHTS_LABEL, elem_id="hair-train-rights")
        with gr.Column():
            form = [gr.Number(value=texture.steps, precision=0, label="Texture encoder steps"),
                    gr.Number(value=inpaint.max_steps, precision=0, label="Inpainting steps"),
                    gr.Number(value=inpaint.rank, precision=0, label="LoRA rank"),
                    gr.Number(value=inpaint.learning_rate, step=1e-5, label="Learning rate (LoRA)")]
    start = gr.Button("Start training", variant="primary", elem_id="hair-train")
    message = gr.Markdown(elem_id="hair-train-message")
    changes = gr.JSON(value={}, visible=False)
    start.click(functools.partial(train_settings, profile), form, changes, api_visibility="private",
                queue=False).success(hair_train, [data_dir, data_zip, run_name, changes, rights], message,
                                     api_name="hair_train")


def build(manager, runtime: Runtime, data_roots: tuple[Path, ...] = ()) -> None:
    """Lay out the tab inside the current Blocks."""
    from pipelines.hair.catalogue import DEFAULT

    choices, auto_mask, mask_of, hair_tryon = make_handlers(manager, runtime)
    has_default = bool(runtime.ref("hair").ref)
    default = [(TOY_DEFAULT_LABEL if runtime.profile.name == "tiny" else DEFAULT_LABEL, DEFAULT)] if has_default else []
    with gr.Tab("Hair") as tab:
        with gr.Tab("Try on"), gr.Row():
            with gr.Column():
                (model, refresh, portrait, editor, grow, uploaded, menus, text, reference, style, identity, steps,
                 cfg, seed) = _inputs_column(default, runtime.profile.name)
                go = gr.Button("Try on", variant="primary", elem_id="hair-tryon")
                stop = gr.Button("Cancel", size="sm")
            with gr.Column():
                result = gr.Image(label="Result", type="pil", format="png", elem_id="hair-result")
                slider = gr.ImageSlider(label="Before / after", type="pil")
                score = gr.Number(label="Identity cosine of the face (before blending; 1 = same face)",
                                  elem_id="hair-identity")
                used = gr.Image(label="Mask used (white = repainted)", type="pil", format="png",
                                elem_id="hair-mask-used")
                info = gr.Markdown(elem_id="hair-info")
                last_seed = gr.Number(visible=False)
                reuse = gr.Button("Reuse this seed", size="sm")
            mask = gr.Image(visible=False, type="pil", image_mode="L", format="png")
            no_grow = gr.Number(value=0, visible=False)  # the editor's mask is grown already; API callers grow theirs
            details = gr.State()
        with gr.Tab("Train"):
            _train_section(make_train_handler(manager, runtime, data_roots), runtime.profile.name)
    gr.on([portrait.change, grow.release], auto_mask, [portrait, grow], editor, api_visibility="private")
    event = go.click(mask_of, [editor, uploaded], mask, api_visibility="private").success(
        hair_tryon, [portrait, menus["color"], menus["curl"], menus["length"], reference, mask, seed, menus["bang"],
                     menus["basestyle"], text, no_grow, style, identity, steps, cfg, model],
        [result, used, score, details], api_name="hair_tryon", concurrency_id=GPU_CONCURRENCY_ID,
        concurrency_limit=1)
    event.success(show_details, [portrait, result, details], [slider, info], api_visibility="private", queue=False)
    event.success(lambda d: (d or {}).get("seed"), details, last_seed, api_visibility="private", queue=False)
    stop.click(None, None, None, cancels=[event], api_visibility="private", queue=False)
    reuse.click(lambda s: s, last_seed, seed, api_visibility="private", queue=False)
    gr.on([tab.select, refresh.click], choices, None, model, api_visibility="private", queue=False)
