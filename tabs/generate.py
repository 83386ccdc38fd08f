"""The Generate tab: text-to-image on the live profile's base model (API name ``generate``)."""
from __future__ import annotations

import gradio as gr

from pipelines import text_to_image
from pipelines.gpu import GPU_CONCURRENCY_ID, on_gpu
from pipelines.runtime import Runtime
from tabs.common import user_errors


def make_handler(runtime: Runtime):
    """The ``generate`` endpoint: the prompt first, every other argument with its default."""
    d = text_to_image.defaults_for(runtime)

    @user_errors
    @on_gpu
    def generate(prompt: str, negative_prompt: str = d.negative_prompt, steps: int = d.steps,
                 cfg: float = d.cfg, seed: int = -1, width: int = d.width, height: int = d.height,
                 num_images: int = 1, progress=gr.Progress(track_tqdm=True)):
        settings = text_to_image.GenerateSettings(prompt, negative_prompt, steps, cfg, seed, width,
                                                  height, num_images)
        images, used_seed = text_to_image.generate(runtime, settings)
        return images, used_seed
    return generate


def build(runtime: Runtime) -> None:
    """Lay out the tab inside the current Blocks."""
    d = text_to_image.defaults_for(runtime)
    with gr.Tab("Generate"):
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt",
                                    placeholder="a red square on a white background")
                negative = gr.Textbox(label="Negative prompt", value=d.negative_prompt, lines=2)
                with gr.Row():
                    steps = gr.Slider(1, text_to_image.MAX_STEPS, value=d.steps, step=1, label="Steps")
                    cfg = gr.Slider(0, 30, value=d.cfg, step=0.5, label="CFG scale")
                with gr.Row():
                    width = gr.Number(value=d.width, precision=0, label="Width")
                    height = gr.Number(value=d.height, precision=0, label="Height")
                    count = gr.Slider(1, text_to_image.MAX_IMAGES, value=1, step=1, label="Images")
                with gr.Row():
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
                    reuse = gr.Button("♻ Reuse seed", size="sm")
                go = gr.Button("Generate", variant="primary", elem_id="generate-button")
            with gr.Column():
                gallery = gr.Gallery(label="Images", format="png", columns=2, elem_id="gallery",
                                     buttons=["download", "fullscreen"])
                used_seed = gr.Number(label="Seed used", precision=0, interactive=False)
        inputs = [prompt, negative, steps, cfg, seed, width, height, count]
        handler = make_handler(runtime)
        go.click(handler, inputs, [gallery, used_seed], api_name="generate",
                 concurrency_id=GPU_CONCURRENCY_ID, concurrency_limit=1)
        prompt.submit(handler, inputs, [gallery, used_seed], api_visibility="private",
                      concurrency_id=GPU_CONCURRENCY_ID, concurrency_limit=1)
        reuse.click(lambda s: s, used_seed, seed, api_visibility="private", queue=False)
