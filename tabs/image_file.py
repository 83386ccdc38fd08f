"""An image input whose handler gets the uploaded file undecoded, so our image checks (not Gradio's) judge it."""
from __future__ import annotations

import gradio as gr
from gradio import processing_utils
from gradio.data_classes import ImageData


class ImageFile(gr.Image):
    """Looks like gr.Image in the page; the handler gets the path of the file as uploaded, never decoded.

    gr.Image opens every upload with Pillow before the handler runs, even with type="filepath", so a text file
    named .png, an empty file or a decompression bomb ends in Gradio's bare "Error" instead of a sentence that
    names the file. Gradio's upload route keeps the user's file name, so the path's name is theirs.
    """
    is_template = True  # drawn by gr.Image's front end
    # No __init__ of our own: Gradio records a component's props from its __init__ signature, and a
    # (*args, **kwargs) one loses them all (the page then draws nothing). preprocess ignores ``type``.

    def preprocess(self, payload: ImageData | None) -> str | None:
        """The uploaded file's path (an inline data: URL is written to Gradio's cache as bytes, not decoded)."""
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return processing_utils.save_base64_to_cache(payload.url, self.GRADIO_CACHE, payload.orig_name)
        return payload.path
