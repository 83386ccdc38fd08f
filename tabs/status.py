"""The profile banner at the top of the page and the Models tab that lists what each role loads."""
from __future__ import annotations

import gradio as gr

from pipelines.models.registry import ROLES
from pipelines.models.runtime import Runtime


def banner(runtime: Runtime) -> None:
    p = runtime.profile
    gr.Markdown(f"## Atelier\n**Profile: `{p.name}`** — {p.reason}. Device: `{p.device}`.",
                elem_id="profile-banner")


def build(runtime: Runtime) -> None:
    with gr.Tab("Models"):
        gr.Markdown("What each model role loads in this profile. Override one with "
                    "`--model ROLE=ID_OR_PATH` or `ATELIER_MODEL_<ROLE>`.")
        rows = [[role, ROLES[role].purpose, ref or "none published: give one with --model", source]
                for role, ref, source in runtime.describe_models()]
        gr.Dataframe(rows, headers=["role", "purpose", "loads", "from"], interactive=False, wrap=True)
