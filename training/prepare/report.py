"""What a dataset preparation kept, dropped and flagged, and why: report.json and report.md."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Note:
    file: str  # as the user named it (path relative to the input, a URL, or a caption-file entry)
    kind: str  # short tag for counting: "unreadable", "too small", "near duplicate", "no face" ...
    message: str  # one sentence naming the file


@dataclass
class Report:
    use_case: str
    settings: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)  # output file name -> source it came from
    dropped: list[Note] = field(default_factory=list)
    warnings: list[Note] = field(default_factory=list)  # kept, but worth a look (text found, renamed, faces)
    untranslated: dict[str, int] = field(default_factory=dict)  # "attribute=word" the vocabulary lacks -> count

    def keep(self, output_name: str, source: str) -> None:
        self.kept[output_name] = source

    def drop(self, file: str, kind: str, message: str) -> None:
        self.dropped.append(Note(file, kind, message))

    def warn(self, file: str, kind: str, message: str) -> None:
        self.warnings.append(Note(file, kind, message))

    def dropped_counts(self) -> dict[str, int]:
        return dict(Counter(note.kind for note in self.dropped).most_common())

    def summary(self) -> str:
        """One line: kept, dropped by reason, warnings."""
        reasons = ", ".join(f"{n} {kind}" for kind, n in self.dropped_counts().items())
        line = f"{self.use_case}: kept {len(self.kept)}, dropped {len(self.dropped)}"
        line += f" ({reasons})" if reasons else ""
        return line + (f", {len(self.warnings)} warning(s)" if self.warnings else "")

    def rows(self) -> list[list[str]]:
        """[file, status, reason] for a table: dropped first, then warnings, then kept."""
        rows = [[n.file, "dropped", n.message] for n in self.dropped]
        rows += [[n.file, "warning", n.message] for n in self.warnings]
        rows += [[name, "kept", "" if source == name else f"from {source}"] for name, source in self.kept.items()]
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "use_case": self.use_case,
            "settings": self.settings,
            "counts": {"kept": len(self.kept), "dropped": len(self.dropped), "warnings": len(self.warnings),
                       "dropped_by_reason": self.dropped_counts()},
            "kept": [{"file": name, "source": source} for name, source in self.kept.items()],
            "dropped": [asdict(n) for n in self.dropped],
            "warnings": [asdict(n) for n in self.warnings],
            **({"untranslated": self.untranslated} if self.untranslated else {}),
        }

    def write(self, folder: Path) -> None:
        """report.json (everything) and report.md (for people) into ``folder``."""
        folder = Path(folder)
        (folder / "report.json").write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
        (folder / "report.md").write_text(self.markdown(), encoding="utf-8")

    def markdown(self) -> str:
        lines = [f"# Dataset report: {self.use_case}", "", self.summary(), "", "## Settings", ""]
        lines += [f"- {key}: `{value}`" for key, value in self.settings.items()]
        for title, notes in (("Dropped", self.dropped), ("Warnings", self.warnings)):
            lines += ["", f"## {title} ({len(notes)})", ""]
            lines += [f"- `{n.file}` ({n.kind}): {n.message}" for n in notes] or ["none"]
        if self.untranslated:
            lines += ["", "## Untranslated words (left out of prompts; add them to the vocabulary)", ""]
            lines += [f"- `{word}`: {n}" for word, n in self.untranslated.items()]
        lines += ["", f"## Kept ({len(self.kept)})", ""]
        lines += [f"- `{name}`" + ("" if src == name else f" ← `{src}`") for name, src in self.kept.items()]
        return "\n".join(lines) + "\n"
