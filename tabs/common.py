"""Helpers shared by tabs: one-sentence UI errors, who is asking, and where their uploads go."""
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
            raise gr.Error(f"{type(err).__name__}: {err}. The server log has the details.") from None
    return wrapper


def owner_of(request: gr.Request | None) -> str:
    """The signed-in user's name, or "local" when the server runs without a login."""
    return getattr(request, "username", None) or LOCAL_OWNER


def slug(text: str) -> str:
    """A folder name made from any text that cannot climb out of its parent; different texts stay apart."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_"
    return safe if safe == text else f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def uploads_root(manager: Any) -> Path:
    """Where uploads live: ``uploads/`` beside the runs folder of ``manager`` (a RunManager)."""
    return manager.runs_root.parent / "uploads"
