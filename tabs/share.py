"""The Share tab: push a LoRA run, an anime run or a hair model to a Hugging Face model repo; pull a repo back into
the LoRA, hair or anime model lists (each user's own)."""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import gradio as gr

from pipelines import hub_share
from pipelines.generate import lora_library
from tabs.common import loras_root, owner_of, pulled_folder, user_errors
from tabs.generate import private_owner

log = logging.getLogger(__name__)


def server_token_allowed(request: gr.Request | None) -> bool:
    """The server's own HF_TOKEN serves only a one-person server: with logins or on a public Space, a visitor
    would push to (or read from) the operator's account."""
    return not getattr(request, "username", None) and not os.environ.get("SPACE_ID")


KINDS = {"LoRA": "lora", "Hair model": "hair", "Anime model": "anime"}  # what a pulled repo becomes
EXPORTED = "exported:"  # a pushable item that is a model exported on the server, not a run


def pushable(manager, owner: str) -> list[tuple[str, str]]:
    """(label, value) of what the owner may push: finished LoRA and anime runs, hair runs with a model, and the
    hair models exported on the server."""
    from pipelines.hair.catalogue import run_model
    from pipelines.hair.model import exported_dir

    items = []
    for status in manager.list_runs(owner):
        if status.use_case == "hair":
            if run_model(manager.find(status.id, owner)) is not None:
                items.append((f"{status.id} (hair model)", status.id))
        elif status.state == "done":
            items.append((f"{status.id} ({'anime model' if status.use_case == 'anime' else 'LoRA'})", status.id))
    if exported_dir().is_dir():
        items += [(f"{p.stem} (exported hair model)", EXPORTED + p.stem) for p in sorted(exported_dir().glob("*.safetensors"))]
    return items


def build_for_push(manager, item: str, owner: str, dest: Path, repo_id: str, license: str) -> Path:
    """The repo folder for one pushable item (see ``pushable``); an item that is not the owner's is refused."""
    from pipelines.hair.catalogue import run_model
    from pipelines.hair.model import exported_dir

    if item.startswith(EXPORTED):
        name = item.removeprefix(EXPORTED)
        path = exported_dir() / f"{name}.safetensors"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or not path.is_file():
            raise hub_share.HubError(f"There is no exported hair model {name!r} on this server.")
        return hub_share.build_hair_folder(path, dest, repo_id, license)
    run_dir = manager.find(item, owner)
    kind = Path(run_dir).parent.name
    if kind == "hair":
        model = run_model(run_dir)
        if model is None:
            raise hub_share.HubError(f"The run {item} has no hair model yet; wait until its inpaint stage ends.")
        samples = sorted(Path(run_dir).glob("**/evaluation/results.png")) + sorted(
            Path(run_dir).glob("**/samples/*.png"), key=lambda p: p.stat().st_mtime)[-3:]
        return hub_share.build_hair_folder(model, dest, repo_id, license, samples)
    if kind == "anime":
        return hub_share.build_anime_folder(Path(run_dir) / "final" / "model.safetensors", dest, repo_id, license,
                                            Path(run_dir))
    return hub_share.build_folder(run_dir, dest, repo_id, license)


def pull_check(kind: str) -> Callable[[Path], object] | None:
    """What a pulled folder must hold for ``kind`` (None: a LoRA, hub_share's own check)."""
    def hair(folder: Path) -> None:
        from pipelines.hair.model import MODEL_FILE, read_metadata

        if not (folder / MODEL_FILE).is_file():
            raise hub_share.HubError(f"The repo holds no {MODEL_FILE}; it is not a hair model shared by Atelier.")
        read_metadata(folder / MODEL_FILE)

    def anime(folder: Path) -> None:
        from pipelines.anime.model import MODEL_FILE, read_checkpoint

        if not (folder / MODEL_FILE).is_file():
            raise hub_share.HubError(f"The repo holds no {MODEL_FILE}; it is not an anime model shared by Atelier.")
        read_checkpoint(folder / MODEL_FILE)
    return {"hair": hair, "anime": anime}.get(kind)


def make_handlers(manager, api_factory: Callable | None = None, download: Callable | None = None):
    """(push, pull) as plain functions. ``api_factory`` builds the HfApi (a stand-in in tests)."""

    @user_errors
    def push(item: str, repo_id: str, token: str = "", license: str = "creativeml-openrail-m",
             private: bool = True, request: gr.Request = None) -> str:
        """Upload a LoRA run, an anime run, a hair run's model or an exported hair model (see ``pushable``)."""
        from huggingface_hub import HfApi

        with tempfile.TemporaryDirectory(prefix="atelier-push-") as tmp:
            folder = build_for_push(manager, item or "", owner_of(request), Path(tmp) / "repo", repo_id, license)
            api = (api_factory or HfApi)()
            url = hub_share.push(api, folder, repo_id, hub_share.token_from(token, server_token_allowed(request)),
                                 private=bool(private))
        return f"Uploaded to {url} ({'private' if private else 'public'})."

    @user_errors
    def pull(repo_id: str, token: str = "", kind: str = "LoRA", request: gr.Request = None) -> str:
        """Download a repo into the caller's LoRAs, hair models or anime models (``kind``: a key of KINDS)."""
        owner = private_owner(request)
        repo_id = hub_share.check_repo_id(repo_id)
        if kind not in KINDS:
            raise hub_share.HubError(f"Pull as one of {', '.join(KINDS)}, not {kind!r}.")
        kind = KINDS[kind]
        dest = (lora_library.hub_folder(loras_root(manager), owner, repo_id) if kind == "lora"
                else pulled_folder(manager, owner, kind) / repo_id.replace("/", "__"))
        hub_share.pull(repo_id, dest, hub_share.token_from(token, server_token_allowed(request)),
                       download=download, check=pull_check(kind))
        where = {"lora": f"pick hub/{repo_id} in Generate's LoRA menus", "hair": "pick it in the Hair tab's Model menu",
                 "anime": "pick it in the Anime tab's Model menu"}[kind]
        return f"Pulled {repo_id}; {where}."
    return push, pull


def build(manager) -> None:
    """Lay out the tab inside the current Blocks."""
    push, pull = make_handlers(manager)
    with gr.Tab("Share") as tab:
        gr.Markdown("The token stays in this page's memory for the request only; it is never saved. "
                    "Without one, a server run by one person (no logins, not a Space) uses its own `HF_TOKEN`.")
        token = gr.Textbox(label="Hugging Face token", type="password")
        with gr.Row():
            with gr.Column():
                item = gr.Dropdown([], label="What to push (a LoRA run, an anime run or a hair model)",
                                   allow_custom_value=True, elem_id="share-item")
                repo = gr.Textbox(label="Repo id (user/name)")
                license = gr.Dropdown(list(hub_share.LICENSES), value=hub_share.LICENSES[0], label="License")
                private = gr.Checkbox(value=True, label="Private repo")
                push_button = gr.Button("Push to the Hub", variant="primary")
            with gr.Column():
                pull_repo = gr.Textbox(label="Pull a repo (user/name)")
                kind = gr.Radio(list(KINDS), value="LoRA", label="Pull it as")
                pull_button = gr.Button("Pull")
        result = gr.Markdown()

        def items(request: gr.Request):
            return gr.update(choices=pushable(manager, owner_of(request)))
        gr.on([tab.select, item.focus], items, None, item, api_visibility="private", queue=False)
        push_button.click(push, [item, repo, token, license, private], result, api_visibility="private")
        pull_button.click(pull, [pull_repo, token, kind], result, api_visibility="private")
