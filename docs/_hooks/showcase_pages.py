"""Generated parts of the zoo and BI-DiffSR pages: the trained models' cards and the stored quality benchmark."""

from __future__ import annotations

import json
import re
from pathlib import Path

from binarize.bench.quality import QualityResult
from binarize.zoo import TRAINED


def cards_markdown(heading_level: int = 2) -> str:
    """Every trained zoo model's card, its headings moved down to ``heading_level``."""
    parts = []
    for name in TRAINED.names():
        text = TRAINED.get(name).card_markdown.read_text(encoding="utf-8")
        parts.append(re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + heading_level - 1) + " ", text, flags=re.M))
    return "\n".join(parts)


def quality_markdown(path: Path) -> str:
    """The table and the checked claims of a stored ``binarize bench quality`` JSON, as printed by the command."""
    data = json.loads(path.read_text(encoding="utf-8"))
    result = QualityResult(data["mode"], data["steps"], data["device"], data["runs"], data.get("bicubic"),
                           data.get("failed", {}))
    return f"```text\n{result.format()}\n```"
