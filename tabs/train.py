"""The Train tab: pick a use case, give a dataset, adjust the preset, start a LoRA run (API name ``train``).

The tab never trains: it hands a request to RunManager, which starts the trainer in its own process; the Runs
tab reads the run folder back.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.models.runtime import Runtime
from tabs.common import owned_folder, owner_of, slug, user_errors, user_uploads
from training.runs.launcher import USE_CASES, RunManager, clean_run_name
from training.runs.pace import estimate
from training.lora.settings import LoraSettings, coerce, field_types, resolve_settings
from training.prepare.safe_zip import safe_extract_zip, single_top_folder

# Shown above the fold; every other setting sits in the "Advanced" accordion, in the dataclass's order.
MAIN_FIELDS = ("max_steps", "learning_rate", "rank", "alpha", "resolution", "trigger_word", "validation_prompts",
               "instance_prompt", "class_prompt")
FORM_FIELDS = MAIN_FIELDS + tuple(f.name for f in fields(LoraSettings)
                                  if f.name not in MAIN_FIELDS and f.name != "preset")
ESTIMATE_FIELDS = ("max_steps", "batch_size", "gradient_accumulation_steps", "with_prior_preservation")
HINTS = {
    "resolution": "0 = the base model's native size",
    "validation_prompts": "one per line; sampled while training",
    "instance_prompt": "DreamBooth: names your subject with the trigger word",
    "class_prompt": "DreamBooth: the subject's class, for prior preservation",
}
RIGHTS_LABEL = "I have the right to use these images"
# What a user wants, for the radio; the values stay the preset names the API and the run ids use.
USE_CASE_LABELS = {"fashion": "Fashion LoRA from captioned photos", "ghibli": "Style LoRA (e.g. Ghibli)",
                   "dreambooth": "Portrait of one person (DreamBooth)"}


class FormError(ValueError):
    """A Train form value is refused; the message says which and why."""


def label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def to_widget(key: str, value: Any) -> Any:
    """A setting as its form widget shows it: lists become one item per line."""
    return "\n".join(value) if isinstance(value, list) else value


def from_widget(key: str, value: Any) -> Any:
    """A widget's (or an API caller's) value as the setting's type; raises SettingsError naming the key."""
    if field_types().get(key) == list[str] and isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    return coerce(key, value)


def preset_form(use_case: str, profile: str = "full") -> list[Any]:
    """The form's values for a use case's preset in ``profile``, in FORM_FIELDS order."""
    settings = resolve_settings(use_case, profile=profile)
    return [to_widget(key, getattr(settings, key)) for key in FORM_FIELDS]


def changed_settings(use_case: str, values: dict[str, Any], profile: str = "full") -> dict[str, Any]:
    """The settings whose form values differ from the preset in ``profile``, typed (lists stay lists, for JSON)."""
    preset = resolve_settings(use_case, profile=profile)
    typed = {key: from_widget(key, value) for key, value in values.items()}
    return {key: value for key, value in typed.items() if value != getattr(preset, key)}


def set_values(settings: dict[str, Any] | None) -> dict[str, str]:
    """Settings as the trainer's ``--set key=value`` strings."""
    if not isinstance(settings, (dict, type(None))):
        raise FormError("settings must be an object of setting names and values, e.g. {\"rank\": 8}.")
    out = {}
    for key, raw in (settings or {}).items():
        value = from_widget(key, raw)
        if isinstance(value, list):
            value = json.dumps(value)  # a JSON list keeps commas inside items (e.g. validation prompts)
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def dataset_folder(manager: RunManager, owner: str, data_dir: str, dataset_zip: str | None, run_name: str,
                   data_roots: tuple[Path, ...] = ()) -> Path:
    """The folder to train on: one of the owner's own (see ``owned_folder``), or their ZIP extracted there."""
    data_dir = (data_dir or "").strip()
    if data_dir and dataset_zip:
        raise FormError("Give either a dataset folder or a ZIP, not both.")
    if dataset_zip:
        mine = user_uploads(manager, owner)
        mine.mkdir(parents=True, exist_ok=True)
        dest = Path(tempfile.mkdtemp(prefix=f"{slug(run_name or 'dataset')}-", dir=mine))
        return single_top_folder(safe_extract_zip(dataset_zip, dest))
    if not data_dir:
        raise FormError("Give a dataset folder on the server or upload a ZIP of images.")
    return owned_folder(manager, owner, data_dir, data_roots)


def make_handlers(manager: RunManager, profile: str, data_roots: tuple[Path, ...] = ()):
    """The tab's plain handlers: (collect, train, estimate_text); ``data_roots`` are the server folders any
    user may train on (``--data-root``)."""

    @user_errors
    def collect(use_case: str, *values: Any) -> dict[str, Any]:
        """The settings the user changed from the preset (the ``settings`` argument of ``train``)."""
        return changed_settings(use_case, dict(zip(FORM_FIELDS, values)), profile)

    @user_errors
    def train(use_case: str, data_dir: str = "", dataset_zip: str | None = None, run_name: str = "",
              settings: dict[str, Any] | None = None, rights_confirmed: bool = False,
              request: gr.Request = None) -> str:
        """Start or queue a run; ``settings`` holds only what differs from the use case's preset."""
        owner = owner_of(request)
        if use_case == "dreambooth" and not rights_confirmed:
            raise FormError(f"Tick “{RIGHTS_LABEL}” before training DreamBooth on photos of people.")
        overrides = set_values(settings)
        eta = run_estimate(use_case, overrides)  # refuses a bad use case or value early
        clean_run_name(run_name, use_case)  # before a ZIP is extracted for nothing
        data = dataset_folder(manager, owner, data_dir, dataset_zip, run_name or "", data_roots)
        status = manager.status(manager.submit(use_case, run_name, data, overrides, owner, profile))
        verb = "Queued" if status.state == "queued" else "Started"
        return f"{verb} **{status.id}**; estimate: {eta}. Follow it in the Runs tab."

    def run_estimate(use_case: str, overrides: dict[str, str]) -> str:
        """How long the run would take, measured from this server's finished runs of the use case when it can."""
        settings = resolve_settings(use_case, overrides, profile)
        return estimate(settings, profile, manager.paces(use_case, profile), use_case)

    def estimate_text(use_case: str, *values: Any) -> str:
        """The estimate line; a bad value shows its sentence here instead of a popup on every keystroke."""
        try:
            overrides = set_values(changed_settings(use_case, dict(zip(FORM_FIELDS, values)), profile))
            return f"**Estimate** ({profile} profile): {run_estimate(use_case, overrides)}."
        except ValueError as err:
            return str(err)

    return collect, train, estimate_text


def _float_step(default: float) -> float:
    """An arrow step one decade below the default, so 1e-4 moves by 1e-5 and 24 by 1."""
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1) if default else 0.01


def widget(key: str, settings: LoraSettings) -> gr.components.Component:
    """The form widget for one setting, chosen by the field's type."""
    kind, value = field_types()[key], to_widget(key, getattr(settings, key))
    common = dict(label=label(key), info=HINTS.get(key), elem_id=f"train-{key}")
    if kind is bool:
        return gr.Checkbox(value=value, **common)
    if kind is int:
        return gr.Number(value=value, precision=0, **common)
    if kind is float:
        return gr.Number(value=value, step=_float_step(getattr(LoraSettings(), key)), **common)
    if kind == list[str]:
        return gr.Textbox(value=value, lines=2, **{**common, "info": HINTS.get(key, "one per line")})
    return gr.Textbox(value=value, **common)


def build(manager: RunManager, runtime: Runtime, data_roots: tuple[Path, ...] = ()) -> None:
    """Lay out the tab inside the current Blocks."""
    profile = runtime.profile.name
    collect, train, estimate_text = make_handlers(manager, profile, data_roots)
    initial = resolve_settings(USE_CASES[0], profile=profile)

    def form_for(use_case: str) -> list[Any]:
        return preset_form(use_case, profile)

    with gr.Tab("Train") as tab:
        with gr.Row():
            with gr.Column():
                use_case = gr.Radio([(USE_CASE_LABELS[u], u) for u in USE_CASES], value=USE_CASES[0],
                                    label="What do you want to train?", elem_id="train-use-case")
                data_dir = gr.Textbox(label="Dataset", placeholder="a dataset name from the Datasets tab",
                                      info="one of your prepared datasets, or a folder under the server's data roots",
                                      elem_id="train-data")
                dataset_zip = gr.File(label="…or a ZIP of images", file_types=[".zip"], type="filepath")
                run_name = gr.Textbox(label="Run name", elem_id="train-run-name",
                                      placeholder="letters, digits, - and _ (empty: use case + date)")
                rights = gr.Checkbox(label=RIGHTS_LABEL, info="Required for DreamBooth (photos of people).")
                eta = gr.Markdown(estimate_text(USE_CASES[0], *form_for(USE_CASES[0])), elem_id="train-estimate")
                start = gr.Button("Start", variant="primary", elem_id="train-start")
                message = gr.Markdown(elem_id="train-message")
            with gr.Column():
                form = {key: widget(key, initial) for key in MAIN_FIELDS}
                with gr.Accordion("Advanced", open=False):
                    form.update({key: widget(key, initial) for key in FORM_FIELDS[len(MAIN_FIELDS):]})
        changes = gr.JSON(value={}, visible=False)  # what `collect` hands to `train`; API callers fill it
        values = [form[key] for key in FORM_FIELDS]
        use_case.change(form_for, use_case, values, api_visibility="private", queue=False).then(
            estimate_text, [use_case, *values], eta, api_visibility="private", queue=False)
        # on select too: runs that finished since the server started or the page loaded make it a measured one
        gr.on([tab.select, *(form[key].input for key in ESTIMATE_FIELDS)], estimate_text, [use_case, *values], eta,
              api_visibility="private", queue=False)
        start.click(collect, [use_case, *values], changes, api_visibility="private", queue=False).success(
            train, [use_case, data_dir, dataset_zip, run_name, changes, rights], message, api_name="train")
