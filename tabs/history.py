"""The History tab: the signed-in user's past generations, and all of them as one ZIP."""
from __future__ import annotations

import gradio as gr
from PIL import Image

from pipelines.generate import outputs
from tabs.common import outputs_root, user_errors
from tabs.generate import private_owner


def make_handlers(manager):
    """(list the owner's images, zip them) as plain functions; each sees only the asking user's folder."""
    root = outputs_root(manager)

    @user_errors
    def history(request: gr.Request = None):
        images = []
        for path in outputs.history(root, private_owner(request)):
            with Image.open(path) as im:
                im.load()  # PIL images, not paths: Gradio serves copies under random names, never our folder
                images.append((im, f"{path.parent.name} {path.stem}"))
        return images

    @user_errors
    def download_all(request: gr.Request = None):
        path = outputs.zip_all(root, private_owner(request))
        if path is None:
            raise gr.Error("You have no generated images yet.")
        return str(path)
    return history, download_all


def build(manager) -> None:
    """Lay out the tab inside the current Blocks."""
    history, download_all = make_handlers(manager)
    with gr.Tab("History") as tab:
        with gr.Row():
            refresh = gr.Button("↻ Refresh", size="sm")
            zip_button = gr.Button("Download all (ZIP)", size="sm")
        archive = gr.File(label="ZIP", interactive=False)
        gallery = gr.Gallery(label="Your images, newest first", format="png", columns=6, elem_id="history")
        gr.on([tab.select, refresh.click], history, None, gallery, api_visibility="private")
        zip_button.click(download_all, None, archive, api_visibility="private")
