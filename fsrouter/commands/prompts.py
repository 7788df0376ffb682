"""``fsrouter prompts``: every prompt with its text, language and file; render them.

``list`` shows, per prompt key, whether it is spoken (rendered by fsrouter, or by the switch
with ``tts.engine: flite``) or a recording, its text and language, the file the switch plays
and whether that file is there. ``render`` renders what is missing (exit 2 naming the key of
a prompt that cannot be rendered, or of a recording that is missing) and, with ``--export``,
copies each prompt to ``<DIR>/<key>.wav`` (8 kHz, what a phone caller hears) so an operator
can listen to all of them before going live.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from fsrouter import prompts
from fsrouter.commands import EXIT_OK, EXIT_USAGE
from fsrouter.commands.common import Failure, emit, emit_json, load, shown
from fsrouter.config import Config, ConfigError
from fsrouter.prompts.render import rate_path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\[\]-]")


def _config(args: argparse.Namespace) -> Config:
    config = load(args.config)
    if args.directory:
        settings = config.prompts.model_copy(update={"directory": str(args.directory)})
        config = config.model_copy(update={"prompts": settings})
    return config


def run_list(args: argparse.Namespace) -> int:
    config = _config(args)
    rows = prompts.entries(config)
    if args.json:
        emit_json([{"key": row.key, "kind": row.kind, "text": row.text,
                    "language": row.language, "file": row.file, "rendered": row.rendered}
                   for row in rows])
        return EXIT_OK
    lines = [f"{len(rows)} prompts, engine {config.tts.engine}, directory "
             f"{config.prompts.directory}"]
    for row in rows:
        state = {"tts": "rendered" if row.rendered else "NOT RENDERED",
                 "file": "found" if row.rendered else "MISSING",
                 "switch": "spoken by the switch"}[row.kind]
        lines.append(f"{row.key}  [{row.kind}, {state}]")
        if row.text:
            lines.append(f"    {row.language}: \"{shown(row.text, 200)}\"")
        lines.append(f"    {shown(row.file, 300)}")
    emit(lines)
    return EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        report = prompts.render_prompts(config)
    except ConfigError as error:
        raise Failure(EXIT_USAGE, *(str(issue) for issue in error.issues)) from None
    emit([f"{report.prompts} spoken prompts, {report.rendered} rendered now "
          f"in {report.seconds:.2f} s, into {config.prompts.directory}"])
    missing = prompts.check_files(config)
    if args.export:
        _export(config, Path(args.export))
    if missing:
        raise Failure(EXIT_USAGE, *(str(issue) for issue in missing))
    return EXIT_OK


def _export(config: Config, target: Path) -> None:
    """Each prompt as ``<target>/<key>.wav``, to listen to (recordings copied as they are)."""
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for row in prompts.entries(config):
        if not row.rendered or row.kind == "switch" or row.file.startswith(prompts.STREAMS):
            continue
        source = rate_path(row.file, 8000) if row.kind == "tts" else Path(row.file)
        suffix = source.suffix or ".wav"
        shutil.copyfile(source, target / (_UNSAFE.sub("_", row.key) + suffix))
        count += 1
    emit([f"exported {count} prompts to {target}"])
