"""Atelier: train, try, compare and share personalised image models. ``python app.py --help``."""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from pathlib import Path

from pipelines.profile import choose_profile
from pipelines.registry import PROFILES, RegistryError, env_overrides, parse_overrides
from pipelines.runtime import Runtime, check_cache_dir, default_cache_dir
from training.cli import OneLineParser, UsageError
from training.launcher import default_runs_root

log = logging.getLogger("atelier")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python app.py", description=__doc__)
    p.add_argument("--profile", default="auto", help=f"one of {', '.join(PROFILES)} (default auto)")
    p.add_argument("--model", action="append", default=[], metavar="ROLE=ID_OR_PATH",
                   help="use another model for a role; repeatable (env: ATELIER_MODEL_<ROLE>)")
    # Spaces and Docker set GRADIO_SERVER_NAME/PORT; flags still win.
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="open a public Gradio share link")
    p.add_argument("--auth", default=os.environ.get("ATELIER_AUTH"), metavar="USER:PASS",
                   help="require a login (env: ATELIER_AUTH)")
    p.add_argument("--shared-runs", action="store_true",
                   help="every user sees every training run in the Runs tab (default: only their own)")
    return p.parse_args(argv)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise UsageError("--auth must be USER:PASS with both parts non-empty.")
    return user, password


def check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port; use 1-65535.")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise UsageError(f"Port {port} on {host} is in use; choose another with --port or stop the "
                             "program using it.") from None


def make_runtime(args: argparse.Namespace) -> Runtime:
    """Validate the model flags and pick the profile; raises RegistryError with one sentence."""
    overrides = {**env_overrides(), **parse_overrides(args.model)}
    profile = choose_profile(args.profile)
    return Runtime(profile=profile, overrides=overrides, cache_dir=check_cache_dir(default_cache_dir()))


def build_app(runtime: Runtime, runs_root: Path | None = None, shared_runs: bool = False):
    """The whole hub as one gr.Blocks; training runs live under ``runs_root`` (default: $ATELIER_RUNS or runs/)."""
    import gradio as gr

    from tabs import datasets, generate, runs, status, train
    from tabs import anime
    from tabs import compare, history, share
    from training.launcher import RunManager

    manager = RunManager(runs_root or default_runs_root())
    with gr.Blocks(title="Atelier") as demo:
        status.banner(runtime)
        generate.build(runtime, manager)
        compare.build(runtime, manager)
        history.build(manager)
        train.build(manager, runtime)
        anime.build(manager, runtime)
        datasets.build(manager, runtime)
        runs.build(manager, shared_runs)
        share.build(manager)
        status.build(runtime)
    return demo


def preload(runtime: Runtime) -> None:
    """Load the base model in the background so the first Generate does not wait for it."""
    def work():
        try:
            runtime.model("sd15")
        except Exception:  # the first request will show the error to the user
            log.warning("preloading sd15 failed", exc_info=True)
    threading.Thread(target=work, name="preload", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        auth = parse_auth(args.auth)
        check_port(args.host, args.port)
        runtime = make_runtime(args)
    except (UsageError, RegistryError) as err:
        print(f"atelier: {err}", file=sys.stderr)
        return 2
    log.info("profile %s", runtime.profile.banner)
    runs_root = default_runs_root()
    demo = build_app(runtime, runs_root, shared_runs=args.shared_runs)
    preload(runtime)
    # Samples are served from the run folders, which may live outside the working directory.
    demo.queue().launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                        allowed_paths=[str(runs_root)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
