"""Saved outputs: PNG infotext on disk, per-user history and ZIP, no user sees another's images."""
from __future__ import annotations

import datetime as dt
import zipfile
from types import SimpleNamespace

from PIL import Image

from pipelines.generate import outputs


def image(seed):
    im = Image.new("RGB", (8, 8), (seed, 0, 0))
    im.info["parameters"] = f"a red square\nSteps: 3, Sampler: DDIM, CFG scale: 7.0, Seed: {seed}, Size: 8x8"
    return im


def test_saved_pngs_keep_infotext_under_user_and_date(tmp_path):
    when = dt.datetime(2026, 5, 4, 12, 0, 0)
    (path,) = outputs.save([image(3)], tmp_path, "alice", now=when)
    assert path.parent == tmp_path / "alice" / "2026-05-04" and path.name.endswith("-3.png")
    with Image.open(path) as im:
        assert "Seed: 3" in im.info["parameters"]


def test_history_and_zip_are_per_user(tmp_path):
    outputs.save([image(1), image(2)], tmp_path, "alice")
    outputs.save([image(5)], tmp_path, "bob")
    outputs.save([image(6)], tmp_path, "../bob")  # a crafted name stays inside the root and apart from bob
    assert len(outputs.history(tmp_path, "alice")) == 2 and len(outputs.history(tmp_path, "bob")) == 1
    assert outputs.zip_all(tmp_path, "carol") is None
    with zipfile.ZipFile(outputs.zip_all(tmp_path, "alice")) as z:
        assert len(z.namelist()) == 2 and all(n.count("/") == 1 for n in z.namelist())
    assert all(tmp_path in p.parents for p in tmp_path.rglob("*.png"))


def test_history_tab_handlers_see_only_the_signed_in_user(tmp_path):
    from tabs import history

    manager = SimpleNamespace(runs_root=tmp_path / "runs")
    root = tmp_path / "outputs"
    outputs.save([image(1)], root, "alice")
    outputs.save([image(2), image(4)], root, "bob")
    list_images, download_all = history.make_handlers(manager)
    alice = SimpleNamespace(username="alice")
    shown = list_images(alice)
    assert len(shown) == 1 and "Seed: 1" in shown[0][0].info["parameters"]
    with zipfile.ZipFile(download_all(SimpleNamespace(username="bob"))) as z:
        assert len(z.namelist()) == 2


def test_on_a_public_space_without_login_each_browser_session_has_its_own_history(tmp_path, monkeypatch):
    from tabs import history
    from tabs.generate import private_owner

    monkeypatch.setenv("SPACE_ID", "someone/atelier")
    one, two = SimpleNamespace(username=None, session_hash="abc"), SimpleNamespace(username=None, session_hash="xyz")
    assert private_owner(one) != private_owner(two)
    assert private_owner(SimpleNamespace(username="alice", session_hash="abc")) == "alice"
    outputs.save([image(1)], tmp_path / "outputs", private_owner(one))
    list_images, _ = history.make_handlers(SimpleNamespace(runs_root=tmp_path / "runs"))
    assert len(list_images(one)) == 1 and list_images(two) == []
    monkeypatch.delenv("SPACE_ID")
    assert private_owner(one) == "local"  # a local server without login has one user
