"""Face-centred crops: a square around the one face, clamped to the image; otherwise no crop box."""
from __future__ import annotations

from PIL import Image

from pipelines.faces import face_box
from training.lora.latents import face_crop_transform


class Faces:
    def __init__(self, *boxes):
        self.boxes = list(boxes)

    def detect(self, image):
        return self.boxes


def test_one_face_gives_a_square_centred_on_it():
    image = Image.new("RGB", (400, 300))
    left, top, right, bottom = face_box(image, Faces((180, 120, 40, 40)))
    assert right - left == bottom - top == 88
    assert (left + right) / 2 == 200 and (top + bottom) / 2 == 140


def test_box_is_clamped_inside_the_image():
    box = face_box(Image.new("RGB", (200, 200)), Faces((0, 0, 60, 60)))
    assert box == (0, 0, 132, 132)


def test_no_face_or_several_faces_means_no_box(tmp_path):
    image = Image.new("RGB", (64, 64), "white")
    assert face_box(image, Faces()) is None
    assert face_box(image, Faces((1, 1, 5, 5), (30, 30, 5, 5))) is None
    image.save(tmp_path / "a.png")
    assert face_crop_transform(Faces())(tmp_path / "a.png", 32).shape == (3, 32, 32)
