"""Caption files in (JSON mapping/list, CSV, metadata.jsonl; errors with line and column) and out; name cleaning."""
from __future__ import annotations

import csv
import json

import pytest

from training.prepare.caption_clean import clean_caption, load_deny_words
from training.prepare.captions_io import (CaptionFileError, caption_file_in, csv_problem, read_captions, read_metadata,
                                  update_captions, write_captions_csv, write_captions_txt, write_fashion_csv,
                                  write_metadata)


def error_of(path) -> str:
    with pytest.raises(CaptionFileError) as info:
        read_captions(path)
    return str(info.value)


def test_json_mapping_list_csv_and_jsonl_agree(tmp_path):
    expected = {"a.jpg": "a red dress", "tops/b.jpg": "a blue shirt, short sleeves"}
    (tmp_path / "map.json").write_text(json.dumps(expected))
    records = [{"image": "a.jpg", "caption": "a red dress"},
               {"file_name": "tops/b.jpg", "text": expected["tops/b.jpg"]}]
    (tmp_path / "list.json").write_text(json.dumps(records))
    (tmp_path / "c.csv").write_text('\ufeffImage,Caption\na.jpg,a red dress\ntops/b.jpg,"a blue shirt, short sleeves"\n'
                                    .replace("\n", "\r\n"))  # as spreadsheets save it
    write_metadata(tmp_path, expected.items())
    for name in ("map.json", "list.json", "c.csv", "metadata.jsonl"):
        assert read_captions(tmp_path / name).by_image == expected, name


def test_repeated_and_nameless_entries_are_warnings(tmp_path):
    (tmp_path / "c.csv").write_text("image,text\na.jpg,first\n,orphan caption\na.jpg,second\n")
    captions = read_captions(tmp_path / "c.csv")
    assert captions.by_image == {"a.jpg": "second"}
    assert any("line 3 has no image name" in w for w in captions.warnings)
    assert any("line 4 repeats a.jpg (first at c.csv line 2)" in w for w in captions.warnings)


def test_malformed_json_names_line_and_column(tmp_path):
    (tmp_path / "bad.json").write_text('{\n  "a.jpg": "a dress",\n  "b.jpg" "no colon"\n}\n')
    assert error_of(tmp_path / "bad.json").startswith("bad.json line 3 column 11 is not valid JSON")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.jpg", "text": "x"}\n{"file_name": "b.jpg",\n')
    assert error_of(tmp_path / "metadata.jsonl").startswith("metadata.jsonl line 2 column")
    (tmp_path / "list.json").write_text('[{"img": "a.jpg", "caption": "x"}]')
    assert "list.json item 1 has keys img, caption; expected an image key" in error_of(tmp_path / "list.json")


def test_malformed_csv_names_line_and_column(tmp_path):
    (tmp_path / "open.csv").write_text('image,text\na.jpg,ok\nb.jpg,"never closed\nc.jpg,x\n')
    assert error_of(tmp_path / "open.csv") == ("open.csv line 3 column 7 is not valid CSV (a quote opened here is "
                                               "never closed).")
    (tmp_path / "after.csv").write_text('image,text\na.jpg,"quoted" then more\n')
    assert error_of(tmp_path / "after.csv").startswith("after.csv line 2 column 15 is not valid CSV (text after a "
                                                       "closing quote")
    (tmp_path / "fields.csv").write_text("image,text\na.jpg,red, with a comma\n")
    assert "fields.csv line 2 has 3 fields but the header has 2" in error_of(tmp_path / "fields.csv")
    (tmp_path / "cols.csv").write_text("path,description\na.jpg,x\n")
    assert "cols.csv line 1 has columns path, description; expected an image column" in error_of(tmp_path / "cols.csv")
    (tmp_path / "latin.csv").write_bytes("image,text\na.jpg,caf\xe9\n".encode("latin-1"))
    assert error_of(tmp_path / "latin.csv") == "latin.csv line 2 column 10 is not UTF-8 text; save the file as UTF-8."
    assert csv_problem('a,"b ""quoted"" c"\n"multi\nline",x\n') is None


def test_other_files_and_lookup(tmp_path):
    (tmp_path / "captions.yaml").write_text("a: b")
    assert "use .json, .jsonl or .csv" in error_of(tmp_path / "captions.yaml")
    assert caption_file_in(tmp_path) is None
    (tmp_path / "one.json").write_text("{}")
    assert caption_file_in(tmp_path) == tmp_path / "one.json"
    (tmp_path / "two.csv").write_text("image,text\n")
    with pytest.raises(CaptionFileError, match="several caption files"):
        caption_file_in(tmp_path)


def test_writers_and_update(tmp_path):
    rows = [("a.png", "a red dress"), ("b.png", 'a "quoted", comma caption')]
    write_metadata(tmp_path, rows)
    write_captions_txt(tmp_path, rows)
    write_captions_csv(tmp_path, rows)
    write_fashion_csv(tmp_path, [(n, t, 320, 240, 51.234) for n, t in rows])
    with (tmp_path / "captions.csv").open(newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["image", "text"] and table[1:] == [list(r) for r in rows]
    assert (tmp_path / "captions.txt").read_text().splitlines()[0] == "a.png\ta red dress"
    assert read_metadata(tmp_path) == rows

    written = update_captions(tmp_path, {"a.png": "a green dress", "b.png": "b"})
    assert {p.name for p in written} == {"metadata.jsonl", "captions.txt", "captions.csv", "fashion_data.csv"}
    assert read_metadata(tmp_path) == [("a.png", "a green dress"), ("b.png", "b")]
    with (tmp_path / "fashion_data.csv").open(newline="") as f:
        assert list(csv.reader(f))[1] == ["a.png", "a green dress", "320", "240", "51.2"]


def test_clean_caption_strips_names_and_appends_the_style_once(tmp_path):
    (tmp_path / "deny.txt").write_text("# characters\nhowl\nmoving castle\n\n")
    deny = load_deny_words(tmp_path / "deny.txt")
    assert deny == ["howl", "moving castle"]
    suffix = "in Ghibli style"
    assert clean_caption("arafed girl standing next to Totoro in the forest", deny, suffix) == \
        "girl standing next to in the forest in Ghibli style"
    assert clean_caption("howl sitting in Howl's Moving Castle", deny, suffix) == "sitting in Ghibli style"
    assert clean_caption("a girl named Chihiro. She smiles", (), suffix) == "a girl. She smiles in Ghibli style"
    assert clean_caption("a boy with Kiki, on a broom", (), "") == "a boy, on a broom"
    assert clean_caption("a cat in Ghibli style.", (), suffix) == "a cat in Ghibli style"
    assert clean_caption("a young girl in a yellow dress stands in front of a forest", (), suffix) == \
        "a young girl in a yellow dress stands in front of a forest in Ghibli style"
    assert clean_caption("Sophie", (), "") == "Sophie"  # a sentence start is kept; the deny list catches it
