"""The Datasets tab: upload a folder or ZIP, prepare it for a use case (API name ``prepare``), review the report,
edit captions and save them (API name ``save_captions``).

The work is done by ``training.prepare``, the package behind ``python -m training.prepare``. Uploads and results
live under ``uploads/<owner>/datasets/``; a result folder is what the Train tab's "Dataset folder" field takes.
"""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from pipelines.models.gpu import GPU_CONCURRENCY_ID, on_gpu
from pipelines.models.runtime import Runtime
from tabs.common import FolderError, owned_folder, owner_of, slug, uploads_root, user_errors
from training.prepare.captions_io import CaptionFileError, read_metadata, update_captions
from training.prepare.checks import CheckSettings
from training.runs.launcher import USE_CASES, RunManager
from training.prepare.caption_clean import DEFAULT_STYLE_SUFFIX
from training.prepare.report import Report
from training.prepare.safe_zip import safe_extract_zip, single_top_folder

REPORT_HEADERS = ["file", "status", "reason"]
CAPTION_HEADERS = ["file_name", "text"]
GALLERY_LIMIT = 60  # thumbnails shown; the caption table lists every image
THUMBNAIL = 192
RIGHTS_LABEL = "I have the right to use these photos"
# The form's labels by option name; preparation messages name a setting by its label, never its CLI flag.
# Every threshold a preparation message cites is one of these fields (the checks every use case shares among them).
LABELS = {"captions": "Captions (JSON, CSV or metadata.jsonl; else the one in the upload)",
          "min_caption": "Min caption (characters)", "sample": "Sample", "seed": "Seed",
          "min_size": "Min size (px)", "max_aspect": "Max aspect ratio", "min_sharpness": "Min sharpness",
          "duplicate_tolerance": "Duplicate tolerance (colour levels)",
          "drop_text": "Drop images with text (else flagged)",
          "caption": "Caption the others with BLIP", "style_suffix": "Style suffix",
          "deny_words": "Names to remove from captions", "crop_face": "Crop a square around the face",
          "size": "Output size (Ghibli, DreamBooth)"}
# What messages call the upload (never its server folder).
MESSAGE_NAMES = {**{option: f"“{label}”" for option, label in LABELS.items()}, "images": "Your upload"}
CHECKS = CheckSettings()  # the form's defaults
TINY_MIN_SIZE = 64  # the tiny profile's toy model works at 64 px: its pictures must pass the size check


def default_min_size(runtime: Runtime) -> int:
    """The seed's minimum for real photos, or the toy model's size in the tiny profile."""
    return TINY_MIN_SIZE if runtime.profile.name == "tiny" else CHECKS.min_size
CAPTION_INFO = "Your own captions (a caption file, or a .txt beside an image) are always kept; BLIP writes the rest."
RANDOM_CAPTIONER_INFO = ("Off by default: this profile's captioner is a tiny untrained model that writes gibberish. "
                         "Your own captions (a caption file, or a .txt beside an image) are always kept.")


KINDS = (*USE_CASES, "hair")  # the LoRA presets, and K-Hairstyle images + labels for hair try-on (seed 000)
PEOPLE = ("dreambooth", "hair")  # kinds made of photos of people: the rights box must be ticked


class DatasetFormError(ValueError):
    """A Datasets form value is refused; the message says which and why."""


def datasets_root(manager: RunManager, owner: str) -> Path:
    """The owner's prepared datasets: uploads/<owner>/datasets/."""
    return uploads_root(manager) / slug(owner) / "datasets"


def stage_upload(files: list[str] | None, zip_file: str | None, work: Path) -> Path:
    """The uploaded images as a folder under ``work``: the ZIP extracted safely, or the files copied.

    A browser folder upload arrives as a flat list (the sub-folders are lost); files that share a name go to
    numbered sub-folders, so a caption naming just "a.jpg" is reported as ambiguous instead of guessed.
    """
    if files and zip_file:
        raise DatasetFormError("Upload either a folder or a ZIP, not both.")
    if not files and not zip_file:
        raise DatasetFormError("Upload a folder of images or a ZIP first.")
    dest = work / "input"
    if zip_file:
        return single_top_folder(safe_extract_zip(zip_file, dest))
    names = Counter(Path(f).name for f in files)
    seen: Counter[str] = Counter()
    for file in files:
        name = Path(file).name
        seen[name] += 1
        target = dest / f"same-name-{seen[name]}" / name if names[name] > 1 else dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    return dest


def owned_dataset(manager: RunManager, owner: str, folder: str) -> Path:
    """The owner's prepared dataset named ``folder`` (as the tab shows it), or a one-sentence refusal."""
    try:
        path = owned_folder(manager, owner, folder or "")
    except FolderError:
        path = None
    if path is None or not path.is_relative_to(datasets_root(manager, owner).resolve()) \
            or not (path / "metadata.jsonl").is_file():
        raise DatasetFormError("That folder is not one of your prepared datasets; run Prepare first.")
    return path


def caption_rows(folder: Path) -> list[list[str]]:
    return [[name, text] for name, text in read_metadata(folder)]


def gallery(folder: Path) -> list[tuple[Image.Image, str]]:
    """Thumbnails with their captions, the first GALLERY_LIMIT images."""
    items = []
    for name, text in read_metadata(folder)[:GALLERY_LIMIT]:
        with Image.open(folder / name) as im:
            thumb = im.convert("RGB")
            thumb.thumbnail((THUMBNAIL, THUMBNAIL))
        items.append((thumb, f"{name}: {text}"))
    return items


def hair_gallery(folder: Path) -> list[tuple[Image.Image, str]]:
    """Bald image beside the portrait, captioned with the English prompt, the first GALLERY_LIMIT images."""
    import json

    items = []
    lines = (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()[:GALLERY_LIMIT]
    for row in map(json.loads, lines):
        for key in ("images", "bald_images"):
            with Image.open(folder / row[key]) as im:
                thumb = im.convert("RGB")
                thumb.thumbnail((THUMBNAIL, THUMBNAIL))
            items.append((thumb, f"{row['id']}: {row['prompt']}" if key == "images" else f"{row['id']}: bald"))
    return items


def table_rows(table: Any) -> list[list[str]]:
    """The caption editor's value as [[file_name, text], ...] (a DataFrame, a list, or the API's dict)."""
    if isinstance(table, dict):
        table = table.get("data", [])
    if hasattr(table, "values") and hasattr(table, "columns"):
        table = table.values.tolist()
    return [[str(cell) if cell is not None else "" for cell in row[:2]] for row in (table or []) if row and row[0]]


def make_handlers(manager: RunManager, runtime: Runtime):
    """The tab's plain handlers: (prepare, save_captions)."""

    def run(use_case: str, source: Path, out: Path, captions_file: str | None, values: dict[str, Any]) -> Report:
        # imported on first use: image checks pull in OpenCV and torch, which would slow every page start
        from pipelines.captioning import runtime_captioner
        from training.prepare.fashion import FashionOptions, prepare_fashion
        from training.prepare.ghibli import GhibliOptions, prepare_ghibli
        from training.prepare.hair import HairOptions, prepare_hair
        from training.prepare.portraits import PortraitOptions, face_detector, prepare_dreambooth, runtime_faces

        """Build the use case's options from the form and run its preparation."""
        if use_case == "hair":  # labels sit beside their images in the upload (or in a mirrored tree)
            return prepare_hair(HairOptions(images=source, labels_dir=source, out=out, labels=MESSAGE_NAMES),
                                face_detector(runtime), runtime_faces(runtime))
        checks = dict(min_size=int(values["min_size"]), max_aspect=float(values["max_aspect"]),
                      min_sharpness=float(values["min_sharpness"]),
                      duplicate_tolerance=int(values["duplicate_tolerance"]), drop_text=bool(values["drop_text"]),
                      labels=MESSAGE_NAMES)
        captions = Path(captions_file) if captions_file else None
        if use_case == "fashion":
            return prepare_fashion(FashionOptions(
                images=source, out=out, captions=captions, min_caption=int(values["min_caption"]),
                sample=int(values["sample"]), seed=int(values["seed"]), **checks))
        if use_case == "ghibli":
            deny = tuple(w.strip() for w in (values["deny_words"] or "").splitlines() if w.strip())
            options = GhibliOptions(images=source, out=out, captions=captions, size=int(values["size"]),
                                    caption=bool(values["caption"]), style_suffix=values["style_suffix"] or "",
                                    extra_deny=deny, **checks)
            return prepare_ghibli(options, runtime_captioner(runtime) if options.caption else None)
        return prepare_dreambooth(PortraitOptions(images=source, out=out, crop_face=bool(values["crop_face"]),
                                                  size=int(values["size"]), **checks),
                                  face_detector(runtime))

    @user_errors
    @on_gpu
    def prepare(use_case: str, files: list[str] | None = None, zip_file: str | None = None,
                captions_file: str | None = None, min_size: int = default_min_size(runtime), min_caption: int = 10,
                sample: int = 10_000, seed: int = 0, size: int = 512,
                duplicate_tolerance: int = CHECKS.duplicate_tolerance, caption: bool = False,
                style_suffix: str = DEFAULT_STYLE_SUFFIX, deny_words: str = "", drop_text: bool = False,
                crop_face: bool = False, rights_confirmed: bool = False, max_aspect: float = CHECKS.max_aspect,
                min_sharpness: float = CHECKS.min_sharpness, request: gr.Request = None,
                progress=gr.Progress(track_tqdm=True)):
        """Prepare the upload; returns (summary, report rows, gallery, caption rows, dataset folder)."""
        from training.prepare.common import PrepareError  # on first use: it loads the image checks (OpenCV)

        if use_case not in KINDS:
            raise DatasetFormError(f"Unknown use case {use_case!r}; choose one of: {', '.join(KINDS)}.")
        if use_case in PEOPLE and not rights_confirmed:
            raise DatasetFormError(f"Tick “{RIGHTS_LABEL}” before preparing photos of people.")
        root = datasets_root(manager, owner_of(request))
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{use_case}-", dir=root))
        values = dict(min_size=min_size, min_caption=min_caption, sample=sample, seed=seed, size=size,
                      duplicate_tolerance=duplicate_tolerance, caption=caption, style_suffix=style_suffix,
                      deny_words=deny_words, drop_text=drop_text, crop_face=crop_face, max_aspect=max_aspect,
                      min_sharpness=min_sharpness)
        try:
            out = work / "dataset"
            report = run(use_case, stage_upload(files, zip_file, work), out, captions_file, values)
        except BaseException as err:
            shutil.rmtree(work, ignore_errors=True)  # nothing half-written stays behind
            if isinstance(err, PrepareError) and err.report is not None:
                # nothing usable: the report table is where each file's reason shows
                gr.Warning(str(err))
                return f"**{err}**", err.report.rows(), [], [], ""
            raise
        finally:
            shutil.rmtree(work / "input", ignore_errors=True)
        name = out.relative_to(root).as_posix()  # what the Train and Anime tabs take; no server path
        summary = (f"**{report.summary()}**\n\nDataset **{name}**: give this name as the Train tab's dataset "
                   "(report.md and report.json are inside).")
        if use_case == "hair":  # prompts come from the labels: shown with the images, not edited
            return summary, report.rows(), hair_gallery(out), [], name
        return summary, report.rows(), gallery(out), caption_rows(out), name

    @user_errors
    def save_captions(folder: str, table: Any, request: gr.Request = None) -> str:
        """Write edited captions back to metadata.jsonl and the dataset's other caption files."""
        path = owned_dataset(manager, owner_of(request), folder)
        current = dict(read_metadata(path))
        for name, _ in (rows := table_rows(table)):
            if name not in current:
                raise DatasetFormError(f"{name} is not an image of this dataset; edit captions, not file names.")
        try:
            written = update_captions(path, {**current, **{name: " ".join(text.split()) for name, text in rows}})
        except CaptionFileError as err:
            raise DatasetFormError(str(err)) from None
        return f"Saved the captions of {len(current)} images to {', '.join(p.name for p in written)}."

    return prepare, save_captions


def build(manager: RunManager, runtime: Runtime) -> None:
    """Lay out the tab inside the current Blocks."""
    prepare, save_captions = make_handlers(manager, runtime)
    with gr.Tab("Datasets"):
        with gr.Row():
            with gr.Column():
                use_case = gr.Radio(list(KINDS), value=KINDS[0], label="Use case", elem_id="data-use-case",
                                    info="hair: K-Hairstyle images with their JSON labels, in one folder or ZIP")
                files = gr.File(label="A folder of images", file_count="directory", type="filepath")
                zip_file = gr.File(label="…or a ZIP", file_types=[".zip"], type="filepath")
                with gr.Group(visible=True) as captions_box:  # fashion and Ghibli read the user's captions
                    captions_file = gr.File(label=LABELS["captions"], file_types=[".json", ".jsonl", ".csv"],
                                            type="filepath")
                with gr.Group(visible=True) as fashion_box:
                    with gr.Row():
                        min_caption = gr.Number(10, precision=0, label=LABELS["min_caption"])
                        sample = gr.Number(10_000, precision=0, label=LABELS["sample"])
                        seed = gr.Number(0, precision=0, label=LABELS["seed"])
                with gr.Group(visible=False) as ghibli_box:
                    # An untrained captioner would write the same gibberish over every image.
                    untrained = runtime.ref("captioner").build
                    caption = gr.Checkbox(label=LABELS["caption"], value=not untrained,
                                          info=RANDOM_CAPTIONER_INFO if untrained else CAPTION_INFO,
                                          elem_id="data-caption")
                    style_suffix = gr.Textbox(DEFAULT_STYLE_SUFFIX, label=LABELS["style_suffix"])
                    deny_words = gr.Textbox("", label=LABELS["deny_words"], lines=2,
                                            placeholder="one per line, e.g. Totoro")
                with gr.Group(visible=False) as dreambooth_box:
                    crop_face = gr.Checkbox(label=LABELS["crop_face"])
                rights = gr.Checkbox(label=RIGHTS_LABEL, visible=False, elem_id="data-rights")
                size = gr.Number(512, precision=0, label=LABELS["size"])
                with gr.Accordion("Checks (fashion, Ghibli, DreamBooth)", open=False) as checks_box:
                    with gr.Row():
                        min_size = gr.Number(default_min_size(runtime), precision=0, label=LABELS["min_size"])
                        max_aspect = gr.Number(CHECKS.max_aspect, label=LABELS["max_aspect"])
                        min_sharpness = gr.Number(CHECKS.min_sharpness, label=LABELS["min_sharpness"],
                                                  info="Measured on the edges; blurred photos score under 30.")
                    with gr.Row():
                        tolerance = gr.Slider(0, 64, value=CHECKS.duplicate_tolerance, step=1,
                                              label=LABELS["duplicate_tolerance"],
                                              info="Crops, resizes and re-encodes stay within 6; 0: exact layouts "
                                                   "only.")
                        drop_text = gr.Checkbox(label=LABELS["drop_text"])
                with gr.Row():
                    go = gr.Button("Prepare", variant="primary", elem_id="data-prepare")
                    stop = gr.Button("Stop")
                summary = gr.Markdown(elem_id="data-summary")
            with gr.Column():
                report = gr.Dataframe(headers=REPORT_HEADERS, label="Report", interactive=False, wrap=True,
                                      column_widths=["22%", "16%", "62%"])
                images = gr.Gallery(label="Images (first 60)", columns=5, height=320)
                captions = gr.Dataframe(headers=CAPTION_HEADERS, label="Captions (edit, then Save)", type="array",
                                        interactive=True, static_columns=[0], wrap=True, elem_id="data-captions")
                folder = gr.Textbox(label="Dataset", interactive=False, elem_id="data-folder")
                save = gr.Button("Save captions")
                saved = gr.Markdown()
        use_case.change(lambda u: [gr.update(visible=u not in PEOPLE), gr.update(visible=u in PEOPLE),
                                   gr.update(visible=u != "hair"), gr.update(visible=u != "hair")]
                        + [gr.update(visible=u == name) for name in USE_CASES], use_case,
                        [captions_box, rights, checks_box, size, fashion_box, ghibli_box, dreambooth_box],
                        api_visibility="private", queue=False)
        inputs = [use_case, files, zip_file, captions_file, min_size, min_caption, sample, seed, size, tolerance,
                  caption, style_suffix, deny_words, drop_text, crop_face, rights, max_aspect, min_sharpness]
        running = go.click(prepare, inputs, [summary, report, images, captions, folder], api_name="prepare",
                           concurrency_id=GPU_CONCURRENCY_ID, concurrency_limit=1)
        stop.click(None, cancels=[running], api_visibility="private", queue=False)
        save.click(save_captions, [folder, captions], saved, api_name="save_captions")
