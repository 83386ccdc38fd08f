"""Atelier: train, try, compare and share personalised image models. ``python app.py --help``."""
from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import logging
import os
import socket
import sys
import threading
from pathlib import Path

from pipelines.models.profile import choose_profile
from pipelines.models.registry import PROFILES, RegistryError, env_overrides, parse_overrides
from pipelines.models.runtime import Runtime, check_cache_dir, check_writable, default_cache_dir
from training.runs.cli import OneLineParser, UsageError
from training.runs.launcher import default_runs_root

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
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS[,USER:PASS...]",
                   help="require a login; repeatable or comma-separated for several users (env: ATELIER_AUTH)")
    p.add_argument("--auth-file", type=Path, metavar="FILE",
                   help="logins as USER:HASH lines, the hash from `python app.py --hash-password`")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password from the terminal, print its hash for --auth-file, and exit")
    p.add_argument("--data-root", action="append", default=[], type=Path, metavar="FOLDER",
                   help="a server folder whose sub-folders every user may train on; repeatable")
    p.add_argument("--shared-runs", action="store_true",
                   help="every user sees every training run in the Runs tab (default: only their own)")
    return p.parse_args(argv)


SCRYPT = dict(n=2**14, r=8, p=1)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$<salt>$<key>`` in hex: what an --auth-file line holds after ``USER:``."""
    salt = salt or os.urandom(16)
    return f"scrypt${salt.hex()}${hashlib.scrypt(password.encode(), salt=salt, **SCRYPT).hex()}"


def password_matches(password: str, stored: str) -> bool:
    """True when ``password`` is the one ``stored`` (a plain password or a ``hash_password`` hash) was made from."""
    if not stored.startswith("scrypt$"):
        return hmac.compare_digest(password.encode(), stored.encode())
    _, salt, _ = stored.split("$")
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt)), stored)


def parse_auth(values: list[str], auth_file: Path | None = None) -> dict[str, str]:
    """User name -> password or hash, from ``--auth`` values (each ``U:P`` or ``U:P,U:P``) and the file.

    Errors name the entry by position or line number, never by its text: that would print a password.
    """
    logins: dict[str, str] = {}
    entries = [entry for value in values for entry in value.split(",")]
    for n, entry in enumerate(entries, 1):
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            raise UsageError(f"--auth login {n} must be USER:PASS with both parts non-empty "
                             "(a password with a comma goes in --auth-file).")
        logins[user] = password
    if auth_file is not None:
        logins.update(read_auth_file(auth_file))
    return logins


def read_auth_file(path: Path) -> dict[str, str]:
    """USER:HASH lines (blank lines and # comments skipped); a plain password is refused."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--auth-file {path} cannot be read ({type(err).__name__}); give a text file of "
                         "USER:HASH lines.") from None
    logins = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, _, stored = line.strip().partition(":")
        if not user or stored.count("$") != 2 or not stored.startswith("scrypt$"):
            raise UsageError(f"--auth-file {path} line {n} is not USER:HASH; make the hash with "
                             "`python app.py --hash-password`.")
        logins[user] = stored
    return logins


def login_checker(logins: dict[str, str]):
    """Gradio's ``auth`` callable for these logins, or None when the server is open."""
    if not logins:
        return None
    return lambda user, password: user in logins and password_matches(password, logins[user])


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


def check_data_roots(roots: list[Path], private: list[Path]) -> tuple[Path, ...]:
    """The --data-root folders resolved; one that holds users' own files (or lies inside them) is refused."""
    checked = []
    for root in roots:
        path = root.expanduser().resolve()
        if not path.is_dir():
            raise UsageError(f"--data-root {root} is not a folder; give an existing folder of datasets.")
        clash = [p for p in private if p.resolve().is_relative_to(path) or path.is_relative_to(p.resolve())]
        if clash:
            raise UsageError(f"--data-root {root} overlaps {clash[0]}, which holds users' own files; give a "
                             "folder of datasets outside it.")
        checked.append(path)
    return tuple(checked)


def build_app(runtime: Runtime, runs_root: Path | None = None, shared_runs: bool = False,
              data_roots: tuple[Path, ...] = ()):
    """The whole hub as one gr.Blocks; training runs live under ``runs_root`` (default: $ATELIER_RUNS or runs/).

    ``data_roots``: server folders every user may train on (checked by ``check_data_roots``).
    """
    import gradio as gr

    from tabs import datasets, generate, runs, status, train
    from tabs import anime, hair
    from tabs import compare, history, share
    from training.runs.launcher import RunManager

    manager = RunManager(runs_root or default_runs_root())
    with gr.Blocks(title="Atelier") as demo:
        status.banner(runtime)
        generate.build(runtime, manager)
        compare.build(runtime, manager)
        history.build(manager)
        train.build(manager, runtime, data_roots)
        anime.build(manager, runtime, data_roots)
        hair.build(manager, runtime, data_roots)
        datasets.build(manager, runtime)
        runs.build(manager, shared_runs)
        share.build(manager)
        status.build(runtime)
    return demo


def launch_options(runs_root: Path, logins: dict[str, str]) -> dict:
    """The ``launch`` arguments that keep users apart: the logins, and users' folders never served.

    Handlers give Gradio images and temporary copies, never paths into users' folders; blocking those folders
    makes Gradio refuse to serve or copy anything from them, whoever asks.
    """
    from tabs.common import private_roots

    return dict(auth=login_checker(logins), blocked_paths=[str(p) for p in private_roots(runs_root)])


def preload(runtime: Runtime) -> None:
    """Load the base model in the background so the first Generate does not wait for it."""
    def work():
        try:
            from pipelines.models.gpu import hide_bitsandbytes_without_cuda

            hide_bitsandbytes_without_cuda()
            runtime.model("sd15")
        except Exception:  # the first request will show the error to the user
            log.warning("preloading sd15 failed", exc_info=True)
    threading.Thread(target=work, name="preload", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        if args.hash_password:
            print(hash_password(getpass.getpass("Password: ")))
            return 0
        env_auth = [os.environ["ATELIER_AUTH"]] if os.environ.get("ATELIER_AUTH") else []
        logins = parse_auth(args.auth or env_auth, args.auth_file)
        check_port(args.host, args.port)
        runtime = make_runtime(args)
        runs_root = check_writable(default_runs_root(), "runs folder",
                                   "set ATELIER_RUNS to a folder you can write to.")
        from tabs.common import private_roots

        data_roots = check_data_roots(args.data_root, private_roots(runs_root))
    except (UsageError, RegistryError) as err:
        print(f"atelier: {err}", file=sys.stderr)
        return 2
    log.info("profile %s; %d login(s)", runtime.profile.banner, len(logins))
    demo = build_app(runtime, runs_root, shared_runs=args.shared_runs, data_roots=data_roots)
    preload(runtime)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=args.share,
                        **launch_options(runs_root, logins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
