"""``python -m bench.prompts``: how long fsrouter takes to render a 9-option menu in two
languages (German and English), cold (empty directory) and cached (a reload with nothing
changed), and a reload with one option changed. Real espeak-ng and sox; prints a table.

Each number has 9 generated option sentences, the invalid-key and goodbye prompts and a
press-to-accept prompt per option; the users' voicemail greeting and the feature-code
confirmations come on top (what a real configuration renders at start).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

LABELS = ("die Datenbanken", "das Netzwerk", "die Server", "die Telefonie", "die Arbeitsplätze",
          "die Sicherheit", "die Anwendungen", "den Speicher", "alles andere")


def menu_config(directory: Path, changed: bool = False) -> dict[str, Any]:
    numbers = []
    for index, language in enumerate(("de", "en")):
        options = [{"digit": digit, "label": label, "policy": "team"}
                   for digit, label in enumerate(LABELS, start=1)]
        if changed and language == "en":
            options[8]["prompt_text"] = "For anything else, please press 9."
        numbers.append({"number": f"+4930400010{index:02d}", "type": "call_routing",
                        "language": language, "options": options})
    return {
        "switch": {"password": "bench-Secret-1"},
        "prompts": {"directory": str(directory)},
        "users": {"anna": {"name": "Anna", "extension": "1001",
                           "phones": [{"type": "mobile", "number": "+4915111111111"}]}},
        "policies": {"team": {"levels": [{"targets": [{"user": "anna"}]}]}},
        "numbers": numbers,
    }


def timed_render(directory: Path, work: Path, changed: bool = False) -> tuple[float, int, int]:
    from fsrouter import prompts
    from fsrouter.config import load_config

    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(menu_config(directory, changed), allow_unicode=True), "utf-8")
    config = load_config(path)
    began = time.perf_counter()
    report = prompts.render_prompts(config)
    return time.perf_counter() - began, report.prompts, report.rendered


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prompts")
    parser.add_argument("--rounds", type=int, default=3, help="cold renders (default 3)")
    args = parser.parse_args(argv)
    from fsrouter import logs
    from fsrouter.prompts.install import ensure_tools

    logs.configure("warning", json=False)
    ensure_tools()
    cold, cached, one = [], [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="fsrouter-bench-prompts-") as tmp:
            work = Path(tmp)
            seconds, total, rendered = timed_render(work / "prompts", work)
            cold.append(seconds)
            assert rendered == total, (rendered, total)
            seconds, _, rendered = timed_render(work / "prompts", work)
            cached.append(seconds)
            assert rendered == 0, rendered
            seconds, _, rendered = timed_render(work / "prompts", work, changed=True)
            one.append(seconds)
            assert rendered == 1, rendered
    print(f"9-option menu in German and English: {total} distinct spoken prompts "
          f"(18 options, 18 press-to-accept, 2 x invalid and goodbye, voicemail greeting, "
          f"4 feature confirmations), espeak-ng + sox at 8 and 16 kHz")
    for name, values in (("cold (empty directory)", cold), ("cached (reload, no change)", cached),
                         ("reload, one option changed", one)):
        print(f"  {name:<28} median {sorted(values)[len(values) // 2]:7.3f} s   "
              f"min {min(values):7.3f} s   max {max(values):7.3f} s   ({len(values)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
