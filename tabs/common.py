"""Helpers shared by tabs: one-sentence UI errors, who is asking, and which folders are theirs.

Every user's files live in per-user folders beside the runs folder (``uploads/``, ``outputs/``, ``loras/``) or in
runs they own. A folder named in a form or an API call is trusted only once it resolves (symlinks and ``..``
followed) inside the caller's own uploads, or under a ``--data-root`` the server's operator allowed.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Callable

import gradio as gr

log = logging.getLogger(__name__)

LOCAL_OWNER = "local"


def user_errors(fn: Callable) -> Callable:
    """Show a known error's sentence with gr.Error, and anything unexpected as one line, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as err:  # our input errors subclass ValueError and carry a full sentence
            raise gr.Error(str(err)) from None
        except Exception as err:
            log.exception("%s failed", fn.__name__)
            # a library's own text may hold server paths or internals: it goes to the log, not to the user
            raise gr.Error(f"Something went wrong on the server ({type(err).__name__}); nothing you made was "
                           "lost, and the server log has the details.") from None
    return wrapper


def owner_of(request: gr.Request | None) -> str:
    """The signed-in user's name, or "local" when the server runs without a login."""
    return getattr(request, "username", None) or LOCAL_OWNER


def slug(text: str) -> str:
    """A folder name made from any text that cannot climb out of its parent; different texts stay apart."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_"
    return safe if safe == text else f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


class FolderError(ValueError):
    """A folder named by a user is not theirs to use; the message says what to do instead."""


UPLOADS, OUTPUTS, LORAS, PULLED = "uploads", "outputs", "loras", "pulled"  # per-user folders beside the runs folder


def uploads_root(manager: Any) -> Path:
    """Where uploads live: ``uploads/`` beside the runs folder of ``manager`` (a RunManager)."""
    return manager.runs_root.parent / UPLOADS


def loras_root(manager: Any) -> Path:
    """``loras/`` beside the runs folder: uploaded and pulled LoRAs, one folder per user."""
    return manager.runs_root.parent / LORAS


def outputs_root(manager: Any) -> Path:
    """``outputs/`` beside the runs folder: every generated PNG, ``<user>/<date>/``."""
    return manager.runs_root.parent / OUTPUTS


def pulled_folder(manager: Any, owner: str, kind: str) -> Path:
    """``pulled/<owner>/<kind>/`` beside the runs folder: the hair or anime repos a user pulled from the Hub."""
    return manager.runs_root.parent / PULLED / slug(owner) / kind


def private_roots(runs_root: Path) -> list[Path]:
    """The runs folder and its per-user siblings: users' own files, never served or trained on directly."""
    return [runs_root, *(runs_root.parent / name for name in (UPLOADS, OUTPUTS, LORAS, PULLED))]


def user_uploads(manager: Any, owner: str) -> Path:
    """The owner's uploads: ``uploads/<owner>/`` (ZIPs extracted for training, prepared datasets)."""
    return uploads_root(manager) / slug(owner)


def owned_folder(manager: Any, owner: str, typed: str, data_roots: tuple[Path, ...] = ()) -> Path:
    """The folder a user typed, resolved; refused unless it is inside their uploads or under a data root.

    A relative name is taken inside the owner's ``datasets/`` (the names the Datasets tab shows). A missing
    folder and someone else's folder get the same answer, so nobody learns what exists on the server.
    """
    mine = user_uploads(manager, owner).resolve()
    candidate = Path(typed.strip()).expanduser()
    path = (candidate if candidate.is_absolute() else mine / "datasets" / candidate).resolve()
    allowed = [mine, *(Path(root).resolve() for root in data_roots)]
    if not any(path.is_relative_to(root) for root in allowed) or not path.is_dir():
        raise FolderError(f"The dataset folder “{typed.strip()}” is not one of your datasets; prepare one in the "
                          "Datasets tab and give its name, or upload a ZIP.")
    return path
