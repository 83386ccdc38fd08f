"""Sharing LoRAs on the Hugging Face Hub: build the folder to upload, upload it, pull a repo back.

The token is only ever passed to huggingface_hub calls: it is never written to a file, card or log.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any, Callable

from pipelines.generate.lora_files import DIFFUSERS_WEIGHTS, inspect, read_header

log = logging.getLogger(__name__)

LICENSES = ("creativeml-openrail-m", "openrail++", "apache-2.0", "mit", "cc-by-nc-4.0", "other")
MAX_SAMPLES = 4
# Settings worth showing on the card (the run's config.toml has more, and paths that are private).
CARD_SETTINGS = ("preset", "rank", "alpha", "learning_rate", "max_train_steps", "batch_size", "resolution",
                 "train_text_encoder", "lr_scheduler", "mixed_precision", "snr_gamma", "trigger_word")


class HubError(ValueError):
    """A Hub action cannot be done; the message says why in one sentence."""


def token_from(box: str | None, server_token: bool = True) -> str | None:
    """The token typed in the UI (kept in memory only), else ``HF_TOKEN`` when ``server_token`` allows it."""
    return (box or "").strip() or (os.environ.get("HF_TOKEN") if server_token else None) or None


def check_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id = (repo_id or "").strip()
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(f"{repo_id!r} is not a Hub repo id; write it as user/name.") from None
    if "/" not in repo_id:
        raise HubError(f"{repo_id!r} has no owner; write it as user/name.")
    return repo_id


def _hub_id(ref: str) -> str | None:
    """``ref`` if it looks like a Hub model id (a local path must not end up on a public card)."""
    return ref if ref and not ref.startswith((".", "/", "~")) and ref.count("/") == 1 else None


def build_folder(run_dir: Path, dest: Path, repo_id: str, license: str = "creativeml-openrail-m",
                 use_case: str | None = None) -> Path:
    """Lay out ``dest`` as the repo: LoRA weights (diffusers + kohya), samples/, and a README.md model card."""
    from huggingface_hub import ModelCardData

    repo_id = check_repo_id(repo_id)
    _check_license(license)
    final = Path(run_dir) / "final"
    lora = inspect(final)  # the run's weights pass the same checks as any LoRA we load
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(final / DIFFUSERS_WEIGHTS, dest / DIFFUSERS_WEIGHTS)
    kohya = [p for p in final.glob("*.safetensors") if p.name != DIFFUSERS_WEIGHTS]
    header: dict[str, str] = {}
    for path in kohya:
        shutil.copyfile(path, dest / path.name)
        header = read_header(path)[2]
    samples = sorted((Path(run_dir) / "samples").glob("*.png"), key=lambda p: p.stat().st_mtime)[-MAX_SAMPLES:]
    (dest / "samples").mkdir(exist_ok=True)
    for path in samples:
        shutil.copyfile(path, dest / "samples" / path.name)
    config = tomllib.loads((Path(run_dir) / "config.toml").read_text()) if (Path(run_dir) / "config.toml").is_file() else {}
    settings = {k: config[k] for k in CARD_SETTINGS if k in config}
    use_case = use_case or Path(run_dir).parent.name
    base = header.get("atelier_base_model", "")
    trigger = lora.trigger_word
    data = ModelCardData(
        base_model=_hub_id(base), license=license, library_name="diffusers",
        tags=["lora", "diffusers", "text-to-image", "stable-diffusion", use_case],
        instance_prompt=trigger or None,
        widget=[{"text": trigger or use_case, "output": {"url": f"samples/{p.name}"}} for p in samples] or None)
    rows = "\n".join(f"| {k} | {v} |" for k, v in settings.items())
    body = f"""# {repo_id.split('/')[-1]}

A LoRA for text-to-image ({use_case}), trained with Atelier on {_hub_id(base) or 'a local base model (' + Path(base).name + ')'}.

Trigger word: `{trigger or '(none)'}`

## Use it

```python
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained("{_hub_id(base) or 'stable-diffusion-v1-5/stable-diffusion-v1-5'}")
pipe.load_lora_weights("{repo_id}", weight_name="{DIFFUSERS_WEIGHTS}")
```

A1111 / ComfyUI: use {', '.join(f'`{p.name}`' for p in kohya) or 'the .safetensors file'}.

## Training settings

| setting | value |
|---|---|
{rows}
"""
    _write_card(dest, data, body)
    return dest


def _write_card(dest: Path, data: Any, body: str) -> None:
    from huggingface_hub import ModelCard

    ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(dest / "README.md")


def _copy_samples(samples: list[Path], dest: Path) -> list[str]:
    """The last MAX_SAMPLES images copied into ``dest/samples``; their repo paths."""
    (dest / "samples").mkdir(parents=True, exist_ok=True)
    names = []
    for i, path in enumerate(samples[-MAX_SAMPLES:]):
        name = f"{i:02d}-{path.name}"
        shutil.copyfile(path, dest / "samples" / name)
        names.append(f"samples/{name}")
    return names


def _table(values: dict[str, Any]) -> str:
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in values.items())


def _check_license(license: str) -> None:
    if license not in LICENSES:
        raise HubError(f"License must be one of {', '.join(LICENSES)}, not {license!r}.")


HAIR_CARD_SETTINGS = ("max_steps", "batch_size", "learning_rate", "adapter_learning_rate", "rank", "alpha",
                      "full_unet", "resolution", "outside_weight", "identity_weight", "texture_weight", "gram_weight")


def build_hair_folder(model_file: Path, dest: Path, repo_id: str, license: str = "openrail++",
                      samples: list[Path] | None = None) -> Path:
    """Lay out ``dest`` as a hair model repo: hair_model.safetensors, samples/, and a card with base model,
    metrics and the gate verdict. A local base path is reduced to its folder name, in the card and the file."""
    from huggingface_hub import ModelCardData

    from pipelines.hair import model as hair_model
    from pipelines.hair.catalogue import verdict

    repo_id = check_repo_id(repo_id)
    _check_license(license)
    model = hair_model.load(model_file)
    base = model.metadata.get("base_model", "")
    model.metadata["base_model"] = _hub_id(base) or Path(base).name
    dest.mkdir(parents=True, exist_ok=True)
    hair_model.save(dest / hair_model.MODEL_FILE, model)
    shown = _copy_samples(samples or [], dest)
    metrics = json.loads(model.metadata.get("metrics", "null")) or {}
    settings = json.loads(model.metadata.get("settings", "{}"))
    gate = verdict(model.metadata) or "not evaluated"
    data = ModelCardData(base_model=_hub_id(base), license=license, library_name="diffusers",
                         tags=["hair", "inpainting", "ip-adapter", "stable-diffusion-xl", "atelier"])
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items()) or "| (not evaluated) | |"
    body = f"""# {repo_id.split('/')[-1]}

A hair try-on model (seed 000's stage 2), trained with Atelier on {_hub_id(base) or 'a local base model (' + Path(base).name + ')'}:
a LoRA on the SDXL inpainting UNet plus identity and style IP-Adapters, in one file ({hair_model.MODEL_FILE}).

Gate (identity > 0.90 and masked LPIPS < 0.20): **{gate}**.

## Metrics (held-out portraits)

| metric | value |
|---|---|
{rows}

## Use it

In Atelier: Share → pull `{repo_id}` as a hair model, or start with `--model hair={repo_id}`.
The file installs on the stock `StableDiffusionXLInpaintPipeline` (`pipelines/hair/model.py: install`), which then
paints with `ip_adapter_image_embeds` = [face identity, hair style].

{' '.join(f'![sample]({name})' for name in shown)}

## Training settings

{_table({k: settings[k] for k in HAIR_CARD_SETTINGS if k in settings})}
"""
    _write_card(dest, data, body)
    return dest


ANIME_CARD_SETTINGS = ("epochs", "batch_size", "learning_rate", "style_loss", "lambda_content", "lambda_style",
                       "lambda_tv", "scheduler")


def build_anime_folder(checkpoint: Path, dest: Path, repo_id: str, license: str = "apache-2.0",
                       run_dir: Path | None = None) -> Path:
    """Lay out ``dest`` as a photo → anime model repo: model.safetensors, samples/, and a card with settings."""
    from huggingface_hub import ModelCardData

    from pipelines.anime.model import MODEL_FILE, read_checkpoint

    repo_id = check_repo_id(repo_id)
    _check_license(license)
    read_checkpoint(checkpoint)  # the same checks as any anime checkpoint we load
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, dest / MODEL_FILE)
    samples = sorted((run_dir / "samples").glob("*.png"), key=lambda p: p.stat().st_mtime) if run_dir else []
    shown = _copy_samples(samples, dest)
    config_file = run_dir / "config.toml" if run_dir else None
    config = tomllib.loads(config_file.read_text()) if config_file and config_file.is_file() else {}
    data = ModelCardData(license=license, library_name="pytorch",
                         tags=["anime", "style-transfer", "image-to-image", "adain", "atelier"])
    body = f"""# {repo_id.split('/')[-1]}

A photo → anime model (seed 002): a ViT-B/16 encoder, AdaIN with a style image's features and a CNN decoder,
trained with Atelier. The file holds the decoder and its configuration ({MODEL_FILE}).

## Use it

In Atelier: Share → pull `{repo_id}` as an anime model, or start with `--model anime={repo_id}`.

{' '.join(f'![sample]({name})' for name in shown)}

## Training settings

{_table({k: config[k] for k in ANIME_CARD_SETTINGS if k in config})}
"""
    _write_card(dest, data, body)
    return dest


def push(api: Any, folder: Path, repo_id: str, token: str | None, private: bool = True) -> str:
    """Create the repo (private by default) and upload ``folder``; returns the repo URL.

    ``api`` is an ``HfApi`` (a stand-in in tests: the Hub is not reachable from CI).
    """
    repo_id = check_repo_id(repo_id)
    if not token:
        raise HubError("No Hugging Face token: set HF_TOKEN or paste a write token in the Share tab.")
    try:
        url = api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token, repo_type="model",
                          commit_message="Upload from Atelier")
    except Exception as err:
        raise HubError(f"The Hub refused the upload to {repo_id} ({_reason(err)}); check the token has write "
                       "access and the Hub is reachable.") from None
    log.info("pushed %s", repo_id)
    return str(getattr(url, "url", url) or f"https://huggingface.co/{repo_id}")


def pull(repo_id: str, dest: Path, token: str | None = None, download: Callable | None = None,
         check: Callable[[Path], Any] | None = None) -> Path:
    """Download a repo's weights (.safetensors and model card only, never pickles) into ``dest`` and check them.

    ``check(dest)`` raises ValueError with a sentence when the files are not what was asked for (default: a LoRA).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    repo_id = check_repo_id(repo_id)
    download = download or snapshot_download
    try:
        download(repo_id, local_dir=str(dest), token=token, allow_patterns=["*.safetensors", "README.md"])
    except GatedRepoError:
        raise HubError(f"{repo_id} is gated; accept its terms on the Hub and give a token.") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise HubError(f"There is no Hub repo {repo_id} (or it is private and the token cannot see it).") from None
    except Exception as err:
        raise HubError(f"Could not download {repo_id} from the Hub ({_reason(err)}); check the network.") from None
    try:
        (check or inspect)(dest)
    except ValueError as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise HubError(f"{repo_id}: {err}") from None
    return dest


def _reason(err: Exception) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text[:120].rstrip(".")
