"""Helpers shared by tabs: turning library errors into one-sentence UI errors."""
from __future__ import annotations

import functools
import logging
from typing import Callable

import gradio as gr

log = logging.getLogger(__name__)


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
