"""One loader per model role; the same code opens the ``full`` hub models and the ``tiny`` local folders.

A reference is what :func:`pipelines.models.registry.resolve` returns: a hub id (``owner/name``), a local folder or
file, or a scheme (``torchvision:vgg19``, ``lpips:alex``, ``insightface:buffalo_l``, ``opencv:NAME``,
``hf-hub:...``/``local-dir:...`` for timm). Nothing here enables remote code; weights are read from safetensors
where the source offers them (any ``torch.load`` fallback in the libraries runs with ``weights_only=True``).
"""
from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

log = logging.getLogger(__name__)

LOCAL_PREFIXES = (".", "/", "~")  # the same rule as registry.check_ref


class ModelLoadError(ValueError):
    """A model could not be loaded; the message names the role, the reference and what to do."""


class Captioner(NamedTuple):
    processor: Any
    model: Any


class ClipScorer(NamedTuple):
    processor: Any
    model: Any


Box = tuple[int, int, int, int]  # x, y, width, height in pixels


def load(role: str, ref: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """Load the model of ``role`` from ``ref`` onto ``device`` in ``dtype``."""
    loader = LOADERS.get(role)
    if loader is None:
        raise ModelLoadError(f"No loader for model role {role!r}; known roles: {', '.join(LOADERS)}.")
    log.info("loading %s from %s on %s (%s)", role, ref, device, dtype)
    try:
        return loader(ref, device, dtype)
    except ModelLoadError:
        raise
    except Exception as e:  # library errors vary (OSError, ValueError, RuntimeError, HTTP errors...)
        raise ModelLoadError(_failure(role, ref, e)) from e


def _failure(role: str, ref: str, error: Exception) -> str:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0].rstrip(".")
    if len(reason) > 160:
        reason = reason[:160].rsplit(" ", 1)[0] + "…"
    if is_local(_strip_scheme(ref)):
        hint = (f"if it is a tiny cache folder delete it so it is rebuilt, else point --model {role}= at a "
                "complete model folder")
    else:
        hint = "check the id and that the Hub is reachable or the weights are cached, or use the tiny profile"
    return f"Could not load the {role} model from {ref} ({reason}); {hint}."


def is_local(ref: str) -> bool:
    """Whether ``ref`` names a local path rather than a hub id or a scheme."""
    return ref.startswith(LOCAL_PREFIXES) or Path(ref).exists()


def _strip_scheme(ref: str) -> str:
    return ref.removeprefix("local-dir:")


def _local_path(role: str, ref: str) -> Path:
    """The existing local path ``ref`` names, or a ModelLoadError that says which one is missing."""
    path = Path(ref).expanduser()
    if not path.exists():
        raise ModelLoadError(f"The {role} model path {path} does not exist; build the tiny models "
                             f"(pipelines.models.tiny_models.build) or pass an existing folder with --model {role}=PATH.")
    return path


def _frozen(module: torch.nn.Module, device: str, dtype: torch.dtype) -> torch.nn.Module:
    module = module.to(device=device, dtype=dtype).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_sd(role: str, ref: str, device: str, dtype: torch.dtype) -> Any:
    """A StableDiffusionPipeline from a hub id, a diffusers folder or a single ``.safetensors`` file."""
    from diffusers import StableDiffusionPipeline
    kwargs = dict(dtype=dtype, safety_checker=None, requires_safety_checker=False)
    if is_local(ref):
        path = _local_path(role, ref)
        if path.is_file():
            if path.suffix != ".safetensors":
                raise ModelLoadError(f"The {role} checkpoint {path} is not a .safetensors file; convert it, since "
                                     "pickled checkpoints are not loaded.")
            return StableDiffusionPipeline.from_single_file(str(path), **kwargs).to(device)
        ref = str(path)
    return StableDiffusionPipeline.from_pretrained(ref, **kwargs).to(device)


def load_sdxl_inpaint(ref: str, device: str, dtype: torch.dtype) -> Any:
    """The SDXL inpainting pipeline (9-channel UNet)."""
    from diffusers import StableDiffusionXLInpaintPipeline
    kwargs: dict[str, Any] = {"dtype": dtype}
    if is_local(ref):
        ref = str(_local_path("sdxl_inpaint", ref))
    elif dtype == torch.float16:
        kwargs["variant"] = "fp16"
    return StableDiffusionXLInpaintPipeline.from_pretrained(ref, **kwargs).to(device)


def _hf_ref(role: str, ref: str) -> str:
    return str(_local_path(role, ref)) if is_local(ref) else ref


def load_captioner(ref: str, device: str, dtype: torch.dtype) -> Captioner:
    """BLIP captioning processor and model."""
    from transformers import BlipForConditionalGeneration, BlipProcessor
    ref = _hf_ref("captioner", ref)
    processor = BlipProcessor.from_pretrained(ref)
    model = BlipForConditionalGeneration.from_pretrained(ref, dtype=dtype).to(device).eval()
    return Captioner(processor, model)


def load_hair_segmenter(ref: str, device: str, dtype: torch.dtype) -> Any:
    """A SegFormer face parser and its image processor, as a HairSegmenter (its id2label must name "hair")."""
    from transformers import SegformerForSemanticSegmentation, SegformerImageProcessor

    from pipelines.hair.segment import HairSegmenter, HairSegmenterError
    ref = _hf_ref("hair_segmenter", ref)
    processor = SegformerImageProcessor.from_pretrained(ref)
    model = SegformerForSemanticSegmentation.from_pretrained(ref, dtype=dtype).to(device).eval()
    try:
        return HairSegmenter(processor, model)
    except HairSegmenterError as err:
        raise ModelLoadError(str(err)) from None


def load_clip_scorer(ref: str, device: str, dtype: torch.dtype) -> ClipScorer:
    """CLIP processor and model for prompt/image agreement."""
    from transformers import CLIPModel, CLIPProcessor
    ref = _hf_ref("clip_scorer", ref)
    processor = CLIPProcessor.from_pretrained(ref)
    model = CLIPModel.from_pretrained(ref, dtype=dtype).to(device).eval()
    return ClipScorer(processor, model)


def load_vit(ref: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A timm model from ``hf-hub:ID``, ``local-dir:PATH`` or a bare local folder."""
    import timm
    if ref.startswith("local-dir:") or is_local(ref):
        ref = "local-dir:" + str(_local_path("vit", _strip_scheme(ref)))
    return timm.create_model(ref, pretrained=True).to(device=device, dtype=dtype).eval()


def load_anime(ref: str, device: str, dtype: torch.dtype) -> Path:
    """The anime checkpoint file (a path, a folder holding model.safetensors, or a hub repo holding it).

    The Stylizer builds the model over the runtime's shared ``vit``, so only the file is fetched here.
    """
    from pipelines.anime.model import MODEL_FILE

    return _weights_file("anime", ref, MODEL_FILE, "Anime")


def load_hair(ref: str, device: str, dtype: torch.dtype) -> Path:
    """The hair try-on model file (a path, a folder holding hair_model.safetensors, or a hub repo holding it).

    The try-on installs it on the runtime's ``sdxl_inpaint`` base, so only the file is fetched here.
    """
    from pipelines.hair.model import MODEL_FILE

    return _weights_file("hair", ref, MODEL_FILE, "Hair")


def _weights_file(role: str, ref: str, name: str, tab: str) -> Path:
    """A role's single weights file: ``ref`` itself, ``name`` inside the folder ``ref``, or ``name`` in hub repo ``ref``."""
    if not ref:
        raise ModelLoadError(f"No default {role} model is published for this profile; train one in the {tab} tab, "
                             f"or start with --model {role}=OWNER/REPO (or a model path).")
    if not is_local(ref):
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(ref, name))
    path = _local_path(role, ref)
    return path / name if path.is_dir() else path


def _read_config(role: str, folder: Path) -> dict:
    config = folder / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"The {role} model folder {folder} has no config.json; delete it so the tiny cache "
                             "rebuilds it, or point --model at a complete folder.")
    return json.loads(config.read_text())


def _safetensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))


def load_vgg(role: str, ref: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """VGG ``.features``: torchvision's pretrained net for ``torchvision:ARCH``, else a tiny local folder."""
    if ref.startswith("torchvision:"):
        import torchvision
        arch = ref.removeprefix("torchvision:")
        if arch not in ("vgg16", "vgg19"):
            raise ModelLoadError(f"The {role} reference {ref} is not torchvision:vgg16 or torchvision:vgg19.")
        return _frozen(getattr(torchvision.models, arch)(weights="DEFAULT").features, device, dtype)
    from pipelines.models.tiny_models import make_vgg_features
    folder = _local_path(role, ref)
    config = _read_config(role, folder)
    if config.get("arch") != role:
        raise ModelLoadError(f"The {role} folder {folder} holds arch {config.get('arch')!r}, not {role}, whose "
                             f"layer indices differ; point --model {role}= at a {role} folder.")
    features = make_vgg_features(config["cfg"])
    features.load_state_dict(_safetensors(folder))
    return _frozen(features, device, dtype)


def load_lpips(ref: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """LPIPS: the packaged calibrated heads for ``lpips:NET``, else a local config + safetensors folder."""
    import lpips
    with warnings.catch_warnings():  # lpips builds torchvision nets with the deprecated ``pretrained`` flag
        warnings.simplefilter("ignore", UserWarning)
        if ref.startswith("lpips:"):
            model = lpips.LPIPS(net=ref.removeprefix("lpips:"), verbose=False)
        else:
            folder = _local_path("lpips", ref)
            config = _read_config("lpips", folder)
            model = lpips.LPIPS(net=config["net"], version=config.get("version", "0.1"),
                                lpips=config.get("lpips", True), pretrained=False, pnet_rand=True, verbose=False)
            model.load_state_dict(_safetensors(folder))
    return _frozen(model, device, dtype)


class DlibFaces:
    """Face boxes and 128-d identity embeddings from dlib: HOG detector, 5-point landmarks, ResNet recogniser."""

    def __init__(self, detector: Any, landmarks: Any, recogniser: Any):
        self.detector, self.landmarks, self.recogniser = detector, landmarks, recogniser

    def detect(self, image: Any) -> list[Box]:
        """Face boxes ``(x, y, w, h)`` in ``image`` (a PIL image), largest first."""
        return [box for box, _ in self._rects(image)]

    def identities(self, image: Any) -> list[tuple[Box, Any]]:
        """(box, unit-length embedding) of every face, largest first."""
        import numpy as np
        pixels = np.asarray(image.convert("RGB"))
        out = []
        for box, rect in self._rects(image):
            vector = np.asarray(self.recogniser.compute_face_descriptor(pixels, self.landmarks(pixels, rect)))
            out.append((box, (vector / np.linalg.norm(vector)).astype(np.float32)))
        return out

    def _rects(self, image: Any) -> list[tuple[Box, Any]]:
        import numpy as np
        # upsampling once finds faces from ~40 px but costs 4x: only small images need it
        found = self.detector(np.asarray(image.convert("RGB")), 1 if min(image.size) < 400 else 0)
        boxes = [((r.left(), r.top(), r.width(), r.height()), r) for r in found]
        return sorted(boxes, key=lambda b: -b[0][2] * b[0][3])


class InsightFaces:
    """Face boxes and identity embeddings from an insightface model pack."""

    def __init__(self, app: Any):
        self.impl = app

    def detect(self, image: Any) -> list[Box]:
        """Face boxes ``(x, y, w, h)`` in ``image`` (a PIL image), largest first."""
        return [box for box, _ in self.identities(image)]

    def identities(self, image: Any) -> list[tuple[Box, Any]]:
        """(box, unit-length embedding) of every face, largest first."""
        import numpy as np
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        out = []
        for face in self.impl.get(bgr):
            x1, y1, x2, y2 = (int(round(float(v))) for v in face.bbox[:4])
            out.append(((x1, y1, x2 - x1, y2 - y1), np.asarray(face.normed_embedding, dtype=np.float32)))
        return sorted(out, key=lambda f: -f[0][2] * f[0][3])


def load_faces(ref: str, device: str, dtype: torch.dtype) -> DlibFaces | InsightFaces:
    """A face model with ``detect`` and ``identities``: ``insightface:PACK`` or ``dlib:FOLDER``.

    ``dlib:face_recognition_models`` is the model folder the ``face-recognition-models`` package installs.
    """
    scheme, _, name = ref.partition(":")
    if scheme == "insightface":
        return _insightface(name, device)
    if scheme == "dlib":
        return _dlib(name)
    raise ModelLoadError(f"The faces reference {ref} is neither insightface:PACK nor dlib:FOLDER; use e.g. "
                         "insightface:buffalo_l.")


def _insightface(name: str, device: str) -> InsightFaces:
    from insightface.app import FaceAnalysis
    cuda = device.startswith("cuda")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    app = FaceAnalysis(name=name, providers=providers)
    app.prepare(ctx_id=0 if cuda else -1, det_size=(640, 640))
    return InsightFaces(app)


def load_face_id(ref: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A FaceIdentity: ``insightface:PACK/FILE.onnx`` or a local ``.onnx`` converted to torch, or a tiny folder."""
    from pipelines.face_id import FaceIdentity, tiny_backbone
    if ref.startswith("insightface:"):
        pack, _, name = ref.removeprefix("insightface:").partition("/")
        from insightface.utils.storage import ensure_available
        return _frozen(FaceIdentity(_onnx_to_torch(Path(ensure_available("models", pack)) / name)), device, dtype)
    path = _local_path("face_id", ref)
    if path.suffix == ".onnx":
        return _frozen(FaceIdentity(_onnx_to_torch(path)), device, dtype)
    config = _read_config("face_id", path)
    if config.get("arch") != "tiny_cnn":
        raise ModelLoadError(f"The face_id folder {path} holds arch {config.get('arch')!r}, not tiny_cnn; give an "
                             "ArcFace .onnx file or insightface:buffalo_l/w600k_r50.onnx.")
    backbone = tiny_backbone(config["widths"], config["dim"])
    backbone.load_state_dict(_safetensors(path))
    return _frozen(FaceIdentity(backbone), device, dtype)


def _onnx_to_torch(path: Path) -> torch.nn.Module:
    """An ONNX network as a torch module (onnx2torch), so that gradients flow through it; no code is executed."""
    import onnx
    from onnx2torch import convert
    if not path.is_file():
        raise ModelLoadError(f"The face_id model {path} does not exist; give an ArcFace .onnx file.")
    try:
        return convert(onnx.load(str(path)))
    except Exception as err:  # onnx's and onnx2torch's errors have no common base
        raise ModelLoadError(f"The face_id model {path} could not be converted to torch ({type(err).__name__}: "
                             f"{err}); give an ArcFace .onnx file such as buffalo_l's w600k_r50.onnx.") from None


DLIB_FILES = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")


def _dlib(name: str) -> DlibFaces:
    import importlib.util

    import dlib
    folder = Path(name).expanduser()
    if not folder.is_dir():  # a package name: its models/ folder, found without importing it (it needs
        spec = importlib.util.find_spec(name)  # pkg_resources, which new setuptools no longer ship)
        folder = Path(spec.origin).parent / "models" if spec and spec.origin else folder
    missing = [f for f in DLIB_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelLoadError(f"The dlib face models are missing ({', '.join(missing)} in {folder}); install "
                             "face-recognition-models or give a folder holding them as --model faces=dlib:FOLDER.")
    return DlibFaces(dlib.get_frontal_face_detector(), dlib.shape_predictor(str(folder / DLIB_FILES[0])),
                     dlib.face_recognition_model_v1(str(folder / DLIB_FILES[1])))


LOADERS: dict[str, Callable[[str, str, torch.dtype], Any]] = {
    "sd15": lambda ref, device, dtype: load_sd("sd15", ref, device, dtype),
    "portrait": lambda ref, device, dtype: load_sd("portrait", ref, device, dtype),
    "sdxl_inpaint": load_sdxl_inpaint,
    "captioner": load_captioner,
    "vit": load_vit,
    "anime": load_anime,
    "hair": load_hair,
    "vgg19": lambda ref, device, dtype: load_vgg("vgg19", ref, device, dtype),
    "vgg16": lambda ref, device, dtype: load_vgg("vgg16", ref, device, dtype),
    "faces": load_faces,
    "face_id": load_face_id,
    "hair_segmenter": load_hair_segmenter,
    "lpips": load_lpips,
    "clip_scorer": load_clip_scorer,
}
