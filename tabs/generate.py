"""The Generate tab: text-to-image with several LoRAs, samplers, batches, PNG info (APIs ``generate``, ``png_info``)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import gradio as gr
from PIL import Image

from pipelines.generate import infotext, lora_library, outputs, text_to_image
from pipelines.models.gpu import GPU_CONCURRENCY_ID, on_gpu
from pipelines.generate.lora_adapters import adapters_for
from pipelines.models.runtime import Runtime
from tabs.common import loras_root, outputs_root, owner_of, user_errors
from tabs.image_file import ImageFile

log = logging.getLogger(__name__)

LORA_SLOTS = 3
NO_LORA = "(none)"


def private_owner(request: gr.Request | None) -> str:
    """Whose outputs and uploaded LoRAs these are: the signed-in user; on a public Space without a login,
    the browser session, so visitors never see each other's images."""
    if getattr(request, "username", None) or not os.environ.get("SPACE_ID"):
        return owner_of(request)
    return f"session-{getattr(request, 'session_hash', None) or 'anonymous'}"


def loras_for(manager, request: gr.Request | None) -> dict[str, Path]:
    """The LoRAs of whoever sent ``request`` (runs by login name, files by private owner)."""
    runs = [(r.id, manager.runs_root / r.use_case / r.name) for r in manager.list_runs(owner_of(request))]
    return lora_library.catalogue(runs, loras_root(manager), private_owner(request))


def make_handler(runtime: Runtime, manager=None):
    """The ``generate`` endpoint: the prompt first, every other argument with its default."""
    d = text_to_image.defaults_for(runtime.profile.name)

    @user_errors
    @on_gpu
    def generate(prompt: str, negative_prompt: str = d.negative_prompt, steps: int = d.steps,
                 cfg: float = d.cfg, seed: int = -1, width: int = d.width, height: int = d.height,
                 num_images: int = 1, sampler: str = "", batch_count: int = 1, loras: str = "",
                 trigger_words: bool = True, request: gr.Request = None,
                 progress=gr.Progress(track_tqdm=True)):
        chosen = lora_library.resolve(loras, loras_for(manager, request)) if manager and loras else []
        if loras and not manager:
            raise lora_library.LoraFileError("LoRAs are not available on this server.")
        settings = text_to_image.GenerateSettings(prompt, negative_prompt, steps, cfg, seed, width, height,
                                                  num_images, sampler or "", batch_count, chosen,
                                                  bool(trigger_words))
        result = text_to_image.run(runtime, settings)
        for warning in result.warnings:
            gr.Warning(warning)
        if manager is not None:
            outputs.save(result.images, outputs_root(manager), private_owner(request))
        return result.images, result.seed
    return generate


def lora_status(runtime: Runtime) -> str:
    """What the last generate applied: modules per active LoRA, with a warning for a LoRA that matched none."""
    adapters = adapters_for(runtime.model("sd15"))
    if not adapters.loaded:
        return "No LoRA active."
    lines = [f"⚠️ **{f.name} matched no layer — it changed nothing.**" if adapters.modules[n] == 0
             else f"✓ {f.name}: applied to {adapters.modules[n]} layers" for n, f in adapters.loaded.items()]
    return "\n\n".join(lines)


def slots_to_spec(*values) -> str:
    """(name, weight, name, weight, …) from the slot widgets → ``"name:weight, …"``."""
    pairs = [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    return lora_library.format_spec((n, float(w)) for n, w in pairs if n and n != NO_LORA)


@user_errors
def png_info(image_path: str | None) -> str:
    """The ``png_info`` endpoint: the A1111 parameters text of a PNG (one sentence when it has none)."""
    if not image_path:
        raise infotext.InfotextError("Drop a PNG made by this hub or A1111 to read its parameters.")
    from pipelines.images import ImageProblem, open_image  # on first use: OpenCV would slow page start

    try:
        open_image(image_path)  # the upload reaches us undecoded: refuse non-images, broken files and bombs
    except ImageProblem as err:
        raise infotext.InfotextError(f"{str(err).rstrip('.')}; drop a PNG made by this hub or A1111 "
                                     "instead.") from None
    with Image.open(image_path) as image:
        text = infotext.read_parameters(image)
    infotext.parse(text)  # a text without a settings line is reported now, not at restore time
    return text


def restore(text: str):
    """Parsed infotext → values for the Generate fields (prompt … height, sampler, LoRA spec)."""
    if not text:
        raise gr.Error("Read a PNG's parameters first.")
    try:
        p = infotext.parse(text)
    except infotext.InfotextError as err:
        raise gr.Error(str(err)) from None
    keep = gr.update()
    sampler = p["sampler"] if p["sampler"] in text_to_image.SAMPLERS else ""
    return (p["prompt"], p["negative_prompt"], p["steps"] or keep, p["cfg"] if p["cfg"] is not None else keep,
            p["seed"] if p["seed"] is not None else keep, p["width"] or keep, p["height"] or keep, sampler,
            lora_library.format_spec(p["loras"]))


def restored_slots(spec: str, names: list[str]) -> tuple[str, list, list[str]]:
    """(spec, slot updates, names left out) for the LoRAs of ``spec`` the menus show: yours, ≤ LORA_SLOTS."""
    pairs = lora_library.parse_spec(spec)
    shown = [(name, weight) for name, weight in pairs if name in names][:LORA_SLOTS]
    left_out = [name for name, _ in pairs if name not in dict(shown)]
    padded = shown + [(NO_LORA, 1.0)] * (LORA_SLOTS - len(shown))
    updates = [u for name, weight in padded for u in (gr.update(choices=[NO_LORA, *names], value=name), weight)]
    return lora_library.format_spec(shown), updates, left_out


def build(runtime: Runtime, manager=None) -> None:
    """Lay out the tab inside the current Blocks."""
    d = text_to_image.defaults_for(runtime.profile.name)
    with gr.Tab("Generate") as tab:
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt",
                                    placeholder="a red square on a white background")
                with gr.Row():  # the main action right under the prompt, not below the long LoRA section
                    go = gr.Button("Generate", variant="primary", elem_id="generate-button")
                    stop = gr.Button("Cancel", variant="stop")
                negative = gr.Textbox(label="Negative prompt", value=d.negative_prompt, lines=2)
                with gr.Row():
                    steps = gr.Slider(1, text_to_image.MAX_STEPS, value=d.steps, step=1, label="Steps")
                    cfg = gr.Slider(0, 30, value=d.cfg, step=0.5, label="CFG scale")
                with gr.Row():
                    sampler = gr.Dropdown([("model default", ""), *[(n, n) for n in text_to_image.SAMPLERS]],
                                          value="", label="Sampler")
                    batch_count = gr.Slider(1, text_to_image.MAX_BATCHES, value=1, step=1, label="Batch count")
                    count = gr.Slider(1, text_to_image.MAX_IMAGES, value=1, step=1, label="Batch size")
                with gr.Row():
                    width = gr.Number(value=d.width, precision=0, label="Width")
                    height = gr.Number(value=d.height, precision=0, label="Height")
                with gr.Row():
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
                    reuse = gr.Button("♻ Reuse seed", size="sm", visible=False)  # shown once there is one
                with gr.Accordion("LoRAs", open=manager is not None, visible=manager is not None):
                    slots = []
                    for i in range(LORA_SLOTS):
                        with gr.Row():
                            slots += [gr.Dropdown([NO_LORA], value=NO_LORA, label=f"LoRA {i + 1}",
                                                  elem_id=f"lora-{i}", allow_custom_value=False),
                                      gr.Slider(-2, 2, value=1.0, step=0.05, label="Weight")]
                    spec = gr.Textbox(value="", label="LoRAs as text (name:weight, …)", elem_id="lora-spec",
                                      info="what the API's `loras` takes; filled from the menus above")
                    triggers = gr.Checkbox(value=True, label="Insert trigger words into the prompt")
                    with gr.Row():
                        upload = gr.File(label="Add a LoRA file (.safetensors)", file_count="single")
                        refresh = gr.Button("↻ Refresh list", size="sm")
                    status = gr.Markdown(elem_id="lora-status")
            with gr.Column():
                gallery = gr.Gallery(label="Images", format="png", columns=2, elem_id="gallery",
                                     buttons=["download", "fullscreen"])
                # Hidden until the first image: an empty Number reads "0", which looks like a seed.
                used_seed = gr.Number(label="Seed used", precision=0, interactive=False, visible=False,
                                      elem_id="seed-used")
                with gr.Accordion("PNG info", open=False):
                    png = ImageFile(label="Drop a PNG", type="filepath", sources=["upload"],
                                    elem_id="png-info-image")
                    params = gr.Textbox(label="Parameters", lines=5, interactive=False, elem_id="png-info-text")
                    send = gr.Button("↩ Restore into Generate", size="sm")
        inputs = [prompt, negative, steps, cfg, seed, width, height, count, sampler, batch_count, spec, triggers]
        handler = make_handler(runtime, manager)
        event = go.click(handler, inputs, [gallery, used_seed], api_name="generate",
                         concurrency_id=GPU_CONCURRENCY_ID, concurrency_limit=1)
        submit = prompt.submit(handler, inputs, [gallery, used_seed], api_visibility="private",
                               concurrency_id=GPU_CONCURRENCY_ID, concurrency_limit=1)
        for e in (event, submit):
            e.success(lambda: (gr.update(visible=True),) * 2, None, [used_seed, reuse], api_visibility="private",
                      queue=False)
            e.then(lambda: lora_status(runtime), None, status, api_visibility="private", queue=False)
        stop.click(None, None, None, cancels=[event, submit], api_visibility="private", queue=False)
        reuse.click(lambda s: s, used_seed, seed, api_visibility="private", queue=False)
        png.change(png_info, png, params, api_name="png_info")
        fields = [prompt, negative, steps, cfg, seed, width, height, sampler, spec]
        if manager is None:
            send.click(restore, params, fields, api_visibility="private", queue=False)
            return
        for widget in slots:
            widget.change(slots_to_spec, slots, spec, api_visibility="private", queue=False)

        def choices(request: gr.Request):
            names = [NO_LORA, *loras_for(manager, request)]
            return [gr.update(choices=names) for _ in range(LORA_SLOTS)]

        @user_errors
        def add(path: str | None, request: gr.Request):
            if path:
                label = lora_library.add_file(Path(path), loras_root(manager), private_owner(request))
                gr.Info(f"Added {label}.")
            return [None, *choices(request)]

        def restore_with_loras(text: str, request: gr.Request):
            *values, wanted = restore(text)
            shown, updates, left_out = restored_slots(wanted, list(loras_for(manager, request)))
            if left_out:
                gr.Warning(f"Not restored: {', '.join(left_out)} (not one of your LoRAs, or more than "
                           f"{LORA_SLOTS}).")
            return (*values, shown, *updates)

        send.click(restore_with_loras, params, [*fields, *slots], api_visibility="private", queue=False)
        dropdowns = slots[::2]
        refresh.click(choices, None, dropdowns, api_visibility="private", queue=False)
        upload.upload(add, upload, [upload, *dropdowns], api_visibility="private")
        # The list depends on who asks, so it is filled when the tab opens and whenever a menu gets focus.
        gr.on([tab.select, *(d.focus for d in dropdowns)], choices, None, dropdowns, api_visibility="private",
              queue=False)
