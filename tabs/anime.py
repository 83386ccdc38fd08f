"""The Anime tab (seed 002): Stylize a photo with a trained run's checkpoint (API ``stylize``) and Train a run.

Training runs in its own process through RunManager (use case ``anime``); progress shows in the Runs tab.
Stylize offers the ``anime`` role's default model (shipped for the tiny profile; in full, whatever
``--model anime=…`` names) and the checkpoints of the caller's own anime runs.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.anime.style_images import STYLE_DIR, style_images
from pipelines.models.runtime import Runtime
from tabs.common import owner_of, pulled_folder, slug, user_errors, user_uploads
from tabs.generate import private_owner
from tabs.image_file import ImageFile
from tabs.train import dataset_folder
from training.anime.settings import AnimeSettings, resolve
from training.runs.launcher import RunManager, clean_run_name

USE_CASE = "anime"
RIGHTS_LABEL = "I have the right to use these photos"
FORM = ("epochs", "batch_size", "learning_rate", "style_loss", "lambda_content", "lambda_style", "lambda_tv",
        "scheduler")
NO_DEFAULT_NOTE = ("No default anime model is published for this profile: train one below (a real model needs "
                   "a GPU), or start Atelier with `--model anime=OWNER/REPO` to use a teammate's shared run.")
TOY_DEFAULT_NOTE = ("Tiny profile: the default model is a toy, a small decoder trained in minutes on procedural "
                    "images (gradients, noise, shapes, toy portraits) over a random tiny ViT. It keeps a photo's "
                    "shapes and repaints them in the style image's colours and texture; it does not draw anime. "
                    "The real model runs in the full profile on a GPU.")
DEFAULT_LABEL = "Default model"
TOY_DEFAULT_LABEL = "Default model (toy)"
DEFAULT_CHECKPOINT = "default"  # the dropdown's value for the ``anime`` role's model


class AnimeFormError(ValueError):
    """An Anime tab value is refused; the message says which and why."""


def run_checkpoints(manager: RunManager, owner: str) -> list[tuple[str, str]]:
    """(label, path) of every checkpoint of the owner's anime runs, newest run first, final weights first."""
    out = []
    for status in manager.list_runs(owner):
        if status.use_case != USE_CASE:
            continue
        run_dir = manager.find(status.id, owner)
        final = run_dir / "final" / "model.safetensors"
        steps = sorted(run_dir.glob("checkpoints/step-*/model.safetensors"),
                       key=lambda p: int(p.parent.name[5:]), reverse=True)
        out += [(f"{status.name} · {'final' if p == final else p.parent.name}", str(p))
                for p in ([final] if final.is_file() else []) + steps]
    return out


def pulled_models(manager: RunManager, owner: str) -> list[tuple[str, str]]:
    """(label, path) of the anime repos the owner pulled in the Share tab."""
    from pipelines.anime.model import MODEL_FILE

    folder = pulled_folder(manager, owner, USE_CASE)
    return [(f"hub {p.parent.name}", str(p)) for p in sorted(folder.glob(f"*/{MODEL_FILE}"))]


def pair_folder(manager: RunManager, owner: str, content: Path, style: Path, run_name: str) -> Path:
    """A folder holding ``content`` and ``style`` links, which is what the launcher passes to the trainer."""
    mine = user_uploads(manager, owner)
    mine.mkdir(parents=True, exist_ok=True)
    pair = Path(tempfile.mkdtemp(prefix=f"{slug(run_name or USE_CASE)}-pair-", dir=mine))
    (pair / "content").symlink_to(content.resolve(), target_is_directory=True)
    (pair / "style").symlink_to(style.resolve(), target_is_directory=True)
    return pair


def default_choice(runtime: Runtime) -> list[tuple[str, str]]:
    """The dropdown entry of the ``anime`` role's model, or none when the profile has no default."""
    if not runtime.ref("anime").ref:
        return []
    return [(TOY_DEFAULT_LABEL if runtime.profile.name == "tiny" else DEFAULT_LABEL, DEFAULT_CHECKPOINT)]


def make_handlers(manager: RunManager, runtime: Runtime, data_roots: tuple[Path, ...] = ()):
    """The tab's plain handlers: (choices, stylize, train); ``data_roots`` as in the Train tab."""
    @functools.cache
    def stylizer():
        """Built on first use: importing torch here would slow every page start."""
        from pipelines.anime.stylize import Stylizer

        return Stylizer(runtime)

    def choices(request: gr.Request = None) -> dict[str, Any]:
        """The checkpoint dropdown's choices for the caller."""
        found = run_checkpoints(manager, owner_of(request)) + pulled_models(manager, private_owner(request)) + \
            default_choice(runtime)
        return gr.update(choices=found, value=found[0][1] if found else None)

    @user_errors
    def stylize(checkpoint: str, content: str, style: str, alpha: float = 1.0, keep_colours: bool = False,
                face_crop: bool = False, request: gr.Request = None):
        """The content photo in the style image's look; returns (result, (content, result)) for the A/B slider."""
        mine = {path for _, path in run_checkpoints(manager, owner_of(request)) +
                pulled_models(manager, private_owner(request))}
        if checkpoint and checkpoint != DEFAULT_CHECKPOINT and checkpoint not in mine:
            raise AnimeFormError(f"The checkpoint {checkpoint} is not one of your anime runs' checkpoints.")
        from pipelines.anime.stylize import check_image

        if checkpoint == DEFAULT_CHECKPOINT:
            checkpoint = runtime.model("anime")  # the file: shipped in tiny, fetched once for a hub id
        result = stylizer()(checkpoint, content, style, alpha, keep_colours, face_crop)
        original = check_image(content, "content").resize(result.size)
        return result, (original, result)

    @user_errors
    def train(content_dir: str = "", content_zip: str | None = None, style_dir: str = "",
              style_zip: str | None = None, use_shipped_styles: bool = False, run_name: str = "",
              settings: dict[str, Any] | None = None, rights_confirmed: bool = False,
              request: gr.Request = None) -> str:
        """Start or queue an anime run; ``settings`` holds trainer settings (see training/anime/settings.py)."""
        owner = owner_of(request)
        if not rights_confirmed:
            raise AnimeFormError(f"Tick “{RIGHTS_LABEL}” before training on photos of people.")
        overrides = {k: str(v) for k, v in (settings or {}).items()}
        resolve(overrides)  # a bad value is refused before anything is extracted
        clean_run_name(run_name, USE_CASE)
        content = dataset_folder(manager, owner, content_dir, content_zip, run_name, data_roots)
        if use_shipped_styles and (style_dir or style_zip):
            raise AnimeFormError("Use the shipped style images or give your own, not both.")
        style = STYLE_DIR if use_shipped_styles else dataset_folder(manager, owner, style_dir, style_zip, run_name,
                                                                               data_roots)
        data = pair_folder(manager, owner, content, style, run_name)
        status = manager.status(manager.submit(USE_CASE, run_name, data, overrides, owner, runtime.profile.name))
        verb = "Queued" if status.state == "queued" else "Started"
        return f"{verb} **{status.id}** ({status.max_steps} steps). Follow it in the Runs tab."

    return choices, stylize, train


def settings_of(*values: Any) -> dict[str, Any]:
    """The form's values that differ from the defaults, as the ``settings`` argument of ``train``."""
    defaults = AnimeSettings()
    return {k: v for k, v in zip(FORM, values) if v is not None and v != getattr(defaults, k)}


def _stylize_section(choices, stylize, default: list[tuple[str, str]]) -> gr.Dropdown:
    if not default:
        gr.Markdown(NO_DEFAULT_NOTE)
    elif default[0][0] == TOY_DEFAULT_LABEL:
        gr.Markdown(TOY_DEFAULT_NOTE, elem_id="anime-toy-note")
    with gr.Row():
        with gr.Column():
            # custom values let API callers pass a path; stylize checks it is one of their runs' checkpoints
            checkpoint = gr.Dropdown(label="Model (the default, a checkpoint of your anime runs, or a pulled repo)", choices=default,
                                     value=default[0][1] if default else None, allow_custom_value=True,
                                     elem_id="anime-checkpoint")
            refresh = gr.Button("Refresh checkpoints", size="sm")
            content = ImageFile(label="Content photo", type="filepath", elem_id="anime-content")
            style = ImageFile(label="Style image", type="filepath", elem_id="anime-style")
            gr.Examples([[str(p)] for p in style_images()], inputs=[style], label="Shipped style images")
            alpha = gr.Slider(0, 1, value=1, step=0.05, label="Alpha (0 = content, 1 = full style)")
            keep = gr.Checkbox(label="Preserve the photo's colours")
            face = gr.Checkbox(label="Crop around the face")
            go = gr.Button("Stylize", variant="primary", elem_id="anime-stylize")
        with gr.Column():
            result = gr.Image(label="Result", type="pil", format="png", elem_id="anime-result")
            slider = gr.ImageSlider(label="Before / after", type="pil")
    refresh.click(choices, None, checkpoint, api_visibility="private", queue=False)
    go.click(stylize, [checkpoint, content, style, alpha, keep, face], [result, slider], api_name="stylize")
    return checkpoint


def _train_section(train) -> None:
    defaults = AnimeSettings()
    with gr.Row():
        with gr.Column():
            content_dir = gr.Textbox(label="Photos folder on the server (flat, or with train/ and val/)")
            content_zip = gr.File(label="…or a ZIP of photos", file_types=[".zip"], type="filepath")
            shipped = gr.Checkbox(label="Use the shipped style images", value=True)
            style_dir = gr.Textbox(label="Anime style folder on the server")
            style_zip = gr.File(label="…or a ZIP of style images", file_types=[".zip"], type="filepath")
            run_name = gr.Textbox(label="Run name", placeholder="letters, digits, - and _ (empty: anime + date)")
            rights = gr.Checkbox(label=RIGHTS_LABEL)
        with gr.Column():
            form = [gr.Number(value=defaults.epochs, precision=0, label="Epochs"),
                    gr.Number(value=defaults.batch_size, precision=0, label="Batch size"),
                    gr.Number(value=defaults.learning_rate, step=1e-5, label="Learning rate (AdamW)"),
                    gr.Radio(["meanstd", "gram"], value=defaults.style_loss, label="Style loss"),
                    gr.Number(value=defaults.lambda_content, label="λ content"),
                    gr.Number(value=defaults.lambda_style, label="λ style"),
                    gr.Number(value=defaults.lambda_tv, label="λ total variation (0 = off)"),
                    gr.Radio(["none", "cosine", "step"], value=defaults.scheduler, label="LR scheduler")]
    start = gr.Button("Start training", variant="primary", elem_id="anime-train")
    message = gr.Markdown()
    changes = gr.JSON(value={}, visible=False)
    start.click(settings_of, form, changes, api_visibility="private", queue=False).success(
        train, [content_dir, content_zip, style_dir, style_zip, shipped, run_name, changes, rights], message,
        api_name="anime_train")


def build(manager: RunManager, runtime: Runtime, data_roots: tuple[Path, ...] = ()) -> None:
    """Lay out the tab inside the current Blocks."""
    choices, stylize, train = make_handlers(manager, runtime, data_roots)
    with gr.Tab("Anime") as tab:
        with gr.Tab("Stylize"):
            checkpoint = _stylize_section(choices, stylize, default_choice(runtime))
        with gr.Tab("Train"):
            _train_section(train)
    tab.select(choices, None, checkpoint, api_visibility="private", queue=False)
