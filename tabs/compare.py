"""The Compare tab: X/Y grids over two axes (API ``compare``) and an A/B image slider."""
from __future__ import annotations

from dataclasses import replace

import gradio as gr

from pipelines.generate import lora_library, outputs, text_to_image, xy_grid
from pipelines.models.gpu import GPU_CONCURRENCY_ID, on_gpu
from pipelines.models.runtime import Runtime
from tabs.common import outputs_root, user_errors
from tabs.generate import NO_LORA, loras_for, private_owner


def make_compare(runtime: Runtime, manager):
    """The ``compare`` endpoint: a labelled grid, the single images (captioned) and a per-cell table."""
    d = text_to_image.defaults_for(runtime.profile.name)

    @user_errors
    @on_gpu
    def compare(prompt: str, x_axis: str = "Steps", x_values: str = "10, 20", y_axis: str = "Nothing",
                y_values: str = "", axis_lora: str = "", seed: int = 1, negative_prompt: str = d.negative_prompt,
                steps: int = d.steps, cfg: float = d.cfg, width: int = d.width, height: int = d.height,
                sampler: str = "", loras: str = "", request: gr.Request = None,
                progress=gr.Progress(track_tqdm=True)):
        known = loras_for(manager, request)
        axis_lora = "" if axis_lora in (None, NO_LORA) else axis_lora
        base = text_to_image.GenerateSettings(prompt, negative_prompt, steps, cfg, seed, width, height,
                                              sampler=sampler or "", loras=lora_library.resolve(loras, known))
        text_to_image.check_inputs(base)
        xy_grid.check_search_replace(prompt, x_axis, x_values, y_axis, y_values)

        def lora_for(label: str):
            return lora_library.resolve(f"{label}:1", known)[0][0]
        if axis_lora:
            lora_for(axis_lora)  # the menu takes any text (see build), so an unknown name is refused here
        cells = xy_grid.plan(base, x_axis, x_values, y_axis, y_values, lora_for, axis_lora)
        result = xy_grid.render(runtime, cells, x_axis, y_axis)
        for warning in result.warnings:
            gr.Warning(warning)
        outputs.save(result.images, outputs_root(manager), private_owner(request))
        table = [[c.x, c.y, caption.split(": ", 1)[-1] if runtime.profile.name == "tiny" else ""]
                 for c, caption in zip(cells, result.captions)]
        return result.grid, list(zip(result.images, result.captions)), table
    return compare


def make_ab(runtime: Runtime, manager):
    """Base vs LoRA at the same seed, for the slider."""
    d = text_to_image.defaults_for(runtime.profile.name)

    @user_errors
    @on_gpu
    def base_vs_lora(prompt: str, lora: str, weight: float = 1.0, seed: int = 1, steps: int = d.steps,
                     request: gr.Request = None):
        if not lora or lora == NO_LORA:
            raise text_to_image.InputError("Pick the LoRA to compare with the base model.")
        known = loras_for(manager, request)
        chosen = lora_library.resolve(f"{lora}:{weight}", known)
        s = text_to_image.GenerateSettings(prompt, d.negative_prompt, steps, d.cfg, seed, d.width, d.height)
        base = text_to_image.run(runtime, s, keep_loras=[chosen[0][0]]).images[0]
        with_lora = text_to_image.run(runtime, replace(s, loras=chosen)).images[0]
        return base, with_lora
    return base_vs_lora


def ab_pair(a, b):
    """Two uploaded images → the slider's value."""
    if a is None or b is None:
        raise gr.Error("Drop two images, A and B.")
    return a, b


def build(runtime: Runtime, manager) -> None:
    """Lay out the tab inside the current Blocks."""
    d = text_to_image.defaults_for(runtime.profile.name)
    with gr.Tab("Compare") as tab:
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="grid-prompt",
                                    value="a red square on a white background")
                preset = gr.Dropdown(["", *xy_grid.PRESETS], value="", label="Preset")
                with gr.Row():
                    x_axis = gr.Dropdown(list(xy_grid.AXES), value="Steps", label="X axis", elem_id="x-axis")
                    x_values = gr.Textbox(value="10, 20", label="X values (comma-separated)", elem_id="x-values")
                with gr.Row():
                    y_axis = gr.Dropdown(list(xy_grid.AXES), value="Nothing", label="Y axis", elem_id="y-axis")
                    y_values = gr.Textbox(value="", label="Y values", elem_id="y-values")
                # Its choices are the caller's LoRAs, filled when the tab opens; API callers never open it, so the
                # menu takes any value and the handler checks it is one of theirs.
                axis_lora = gr.Dropdown([NO_LORA], value=NO_LORA, label="LoRA for the axes (weight, checkpoint)",
                                        allow_custom_value=True, elem_id="axis-lora")
                with gr.Row():
                    seed = gr.Number(value=1, precision=0, label="Seed (fixed across cells)")
                    steps = gr.Slider(1, text_to_image.MAX_STEPS, value=d.steps, step=1, label="Steps")
                    cfg = gr.Slider(0, 30, value=d.cfg, step=0.5, label="CFG scale")
                with gr.Accordion("More", open=False):
                    negative = gr.Textbox(label="Negative prompt", value=d.negative_prompt)
                    width = gr.Number(value=d.width, precision=0, label="Width")
                    height = gr.Number(value=d.height, precision=0, label="Height")
                    sampler = gr.Dropdown([("model default", ""), *[(n, n) for n in text_to_image.SAMPLERS]],
                                          value="", label="Sampler")
                    loras = gr.Textbox(value="", label="LoRAs in every cell (name:weight, …)")
                go = gr.Button("Make grid", variant="primary", elem_id="grid-button")
            with gr.Column():
                grid = gr.Image(label="Grid", format="png", type="pil", interactive=False, elem_id="grid-image")
                singles = gr.Gallery(label="Cells", format="png", columns=4, elem_id="grid-cells")
                table = gr.Dataframe(headers=["x", "y", "toy judge"], label="Per cell", interactive=False)
        with gr.Accordion("A/B slider", open=False):
            with gr.Row():
                a = gr.Image(label="A", type="pil", image_mode=None)
                b = gr.Image(label="B", type="pil", image_mode=None)
            with gr.Row():
                show = gr.Button("Compare A and B")
                weight = gr.Slider(-2, 2, value=1.0, step=0.05, label="LoRA weight")
                base_lora = gr.Button("Base vs the axes' LoRA at this seed")
            slider = gr.ImageSlider(label="A | B", type="pil", elem_id="ab-slider")
        inputs = [prompt, x_axis, x_values, y_axis, y_values, axis_lora, seed, negative, steps, cfg, width, height,
                  sampler, loras]
        go.click(make_compare(runtime, manager), inputs, [grid, singles, table], api_name="compare",
                 concurrency_id=GPU_CONCURRENCY_ID, concurrency_limit=1)
        show.click(ab_pair, [a, b], slider, api_visibility="private")
        base_lora.click(make_ab(runtime, manager), [prompt, axis_lora, weight, seed, steps], slider,
                        api_visibility="private", concurrency_id=GPU_CONCURRENCY_ID, concurrency_limit=1)
        preset.change(lambda p: xy_grid.PRESETS.get(p, (gr.update(),) * 4), preset,
                      [x_axis, x_values, y_axis, y_values], api_visibility="private", queue=False)

        def choices(request: gr.Request):
            return gr.update(choices=[NO_LORA, *loras_for(manager, request)])
        gr.on([tab.select, axis_lora.focus], choices, None, axis_lora, api_visibility="private", queue=False)
