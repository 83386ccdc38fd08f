"""Broken images sent to the served /png_info and /stylize get one sentence naming the file, not Gradio's error."""
from __future__ import annotations

import pytest
from PIL import Image

from tests.prepare_images import bomb_png, photo, save, truncated


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Text named .png, an empty file, a cut JPEG and a 30000 x 30000 PNG bomb."""
    folder = tmp_path_factory.mktemp("broken")
    (folder / "notes.png").write_text("not an image, just text")
    (folder / "empty.png").write_bytes(b"")
    return [folder / "notes.png", folder / "empty.png", truncated(folder / "cut.jpg"),
            bomb_png(folder / "bomb.png", 30_000, 30_000)]


@pytest.fixture(scope="module")
def client(served_app):
    from gradio_client import Client

    return Client(served_app, verbose=False)


def refusal(client, *args, api_name: str) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


def test_png_info_names_a_broken_file(client, broken, tmp_path):
    from gradio_client import handle_file
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a red square\nSteps: 2, Seed: 8, Size: 64x64")
    Image.new("RGB", (64, 64)).save(tmp_path / "made.png", pnginfo=info)
    text = client.predict(handle_file(str(tmp_path / "made.png")), api_name="/png_info")
    assert text.endswith("Seed: 8, Size: 64x64")
    for path in broken:
        message = refusal(client, handle_file(str(path)), api_name="/png_info")
        assert message.startswith(path.name) and message.endswith("drop a PNG made by this hub or A1111 instead."), \
            message


def test_stylize_names_a_broken_content_or_style_file(client, broken, tmp_path):
    from gradio_client import handle_file

    good = handle_file(str(save(photo(0, (64, 64)), tmp_path / "me.png")))
    for path in broken:
        for role, args in (("content", (handle_file(str(path)), good)), ("style", (good, handle_file(str(path))))):
            message = refusal(client, "default", *args, 0.8, False, False, api_name="/stylize")
            assert message.startswith(f"The {role} image: {path.name} ") and "upstream" not in message, message
    result, _ = client.predict("default", good, good, 0.8, False, False, api_name="/stylize")
    with Image.open(result) as im:
        assert im.size == (64, 64)


def test_the_undecoded_image_input_keeps_its_props_for_the_page():
    """Gradio reads props from __init__'s signature; a lost label once left the whole Anime tab blank."""
    import gradio as gr

    from tabs.image_file import ImageFile

    with gr.Blocks() as demo:
        ImageFile(label="Content photo", type="filepath", elem_id="anime-content")
    [component] = demo.get_config_file()["components"]
    assert component["type"] == "image" and component["props"]["label"] == "Content photo"
    assert component["props"]["elem_id"] == "anime-content"
