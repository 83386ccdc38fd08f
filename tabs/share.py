"""The Share tab: push a run's LoRA to a Hugging Face model repo, or pull a repo into the LoRA list."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import gradio as gr

from pipelines import hub_share
from pipelines.generate import lora_library
from tabs.common import loras_root, owner_of, user_errors
from tabs.generate import private_owner

log = logging.getLogger(__name__)


def server_token_allowed(request: gr.Request | None) -> bool:
    """The server's own HF_TOKEN serves only a one-person server: with logins or on a public Space, a visitor
    would push to (or read from) the operator's account."""
    return not getattr(request, "username", None) and not os.environ.get("SPACE_ID")


def make_handlers(manager, api_factory: Callable | None = None, download: Callable | None = None):
    """(push, pull) as plain functions. ``api_factory`` builds the HfApi (a stand-in in tests)."""

    @user_errors
    def push(run_id: str, repo_id: str, token: str = "", license: str = "creativeml-openrail-m",
             private: bool = True, request: gr.Request = None) -> str:
        from huggingface_hub import HfApi

        run_dir = manager.find(run_id, owner_of(request))
        with tempfile.TemporaryDirectory(prefix="atelier-push-") as tmp:
            folder = hub_share.build_folder(run_dir, Path(tmp) / "repo", repo_id, license)
            api = (api_factory or HfApi)()
            url = hub_share.push(api, folder, repo_id, hub_share.token_from(token, server_token_allowed(request)),
                                 private=bool(private))
        return f"Uploaded to {url} ({'private' if private else 'public'})."

    @user_errors
    def pull(repo_id: str, token: str = "", request: gr.Request = None) -> str:
        owner = private_owner(request)
        repo_id = hub_share.check_repo_id(repo_id)
        dest = lora_library.hub_folder(loras_root(manager), owner, repo_id)
        hub_share.pull(repo_id, dest, hub_share.token_from(token, server_token_allowed(request)),
                       download=download)
        return f"Pulled {repo_id}; pick hub/{repo_id} in Generate's LoRA menus."
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
                run = gr.Dropdown([], label="Run to push", allow_custom_value=True)
                repo = gr.Textbox(label="Repo id (user/name)")
                license = gr.Dropdown(list(hub_share.LICENSES), value=hub_share.LICENSES[0], label="License")
                private = gr.Checkbox(value=True, label="Private repo")
                push_button = gr.Button("Push to the Hub", variant="primary")
            with gr.Column():
                pull_repo = gr.Textbox(label="Pull a LoRA repo (user/name)")
                pull_button = gr.Button("Pull into my LoRAs")
        result = gr.Markdown()

        def runs(request: gr.Request):
            done = [r.id for r in manager.list_runs(owner_of(request)) if r.state == "done"]
            return gr.update(choices=done)
        gr.on([tab.select, run.focus], runs, None, run, api_visibility="private", queue=False)
        push_button.click(push, [run, repo, token, license, private], result, api_visibility="private")
        pull_button.click(pull, [pull_repo, token], result, api_visibility="private")
