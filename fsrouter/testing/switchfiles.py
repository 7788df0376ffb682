"""Files a test switch needs besides its configuration: the voicemail prompts (none ship
with the switch) and a mail catcher in place of ``sendmail`` (split from realswitch.py)."""

from __future__ import annotations

import math
import re
import shlex
import shutil
import tempfile
import wave
from pathlib import Path

# Prompt WAVs for the voicemail phrase macros (none ship with the switch), made once per host.
# Bump the version when the sounds or the list change, so a stale cache is not reused.
SOUND_CACHE = Path(tempfile.gettempdir()) / "fsrouter-freeswitch-sounds-v1"
PROMPT_SECONDS = 0.4


class SwitchError(RuntimeError):
    """The real switch could not be found, started, or asked something."""


# -- prompts ----------------------------------------------------------------------------------

# What `vm-$1.wav` in the voicemail_ack macro can become (mod_voicemail.c passes these words).
_ACK_WORDS = ("deleted", "saved", "emailed", "marked-urgent")
_MACRO_FILE = re.compile(r'data="([A-Za-z0-9_/$-]+\.wav)"')


def prompt_names(lang_dir: Path | None) -> list[str]:
    """Sound files (relative to the sound prefix) the English voicemail macros can play.

    Every ``play-file`` named in ``lang/en/vm/sounds.xml`` plus what mod_say_en spells a
    mailbox id or a key with: ``digits/<0-9>``, ``ascii/<code>`` (letters, ``#``, ``*``).
    """
    names = {f"digits/{digit}.wav" for digit in range(10)}
    names |= {f"ascii/{ord(char)}.wav" for char in "abcdefghijklmnopqrstuvwxyz#*+"}
    macros = lang_dir / "en" / "vm" / "sounds.xml" if lang_dir else None
    if macros is not None and macros.is_file():
        for name in _MACRO_FILE.findall(macros.read_text(encoding="utf-8")):
            if "$" in name:
                names |= {re.sub(r"\$[0-9]", word, name) for word in _ACK_WORDS}
            else:
                names.add(name)
    return sorted(names)


def write_prompt(path: Path, seconds: float = PROMPT_SECONDS, rate: int = 8000) -> None:
    """A soft 440 Hz tone, 16-bit mono: audible in a recording, quiet, with no clicks."""
    count = int(seconds * rate)
    fade = max(1, min(count // 4, rate // 50))
    frames = bytearray()
    for index in range(count):
        gain = min(1.0, index / fade, (count - 1 - index) / fade)
        sample = int(3000 * gain * math.sin(2 * math.pi * 440 * index / rate))
        frames += sample.to_bytes(2, "little", signed=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))


def install_prompts(sounds_dir: Path, lang_dir: Path | None, cache: Path = SOUND_CACHE) -> int:
    """Put the voicemail prompts under ``sounds_dir``; returns how many files it holds.

    The WAVs are made once into ``cache`` (renamed into place, so parallel runs see all of
    it or nothing) and copied from there: making them costs ~0.2 s, copying a few ms.
    """
    names = prompt_names(lang_dir)
    if not all((cache / name).is_file() for name in names):
        staging = Path(tempfile.mkdtemp(prefix="fsrouter-sounds-", dir=cache.parent))
        for name in names:
            write_prompt(staging / name)
        shutil.rmtree(cache, ignore_errors=True)
        try:
            staging.rename(cache)
        except OSError:  # a parallel run won the race; its files are the same
            shutil.rmtree(staging, ignore_errors=True)
    source = cache if all((cache / name).is_file() for name in names) else None
    if source is None:
        raise SwitchError(f"could not prepare the prompt cache {cache}")
    for name in names:
        target = sounds_dir / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, target)
    return len(names)


def write_mail_catcher(script: Path, mail_dir: Path) -> Path:
    """A ``mailer-app`` that keeps each mail as ``mail_dir/mail-*.eml`` instead of sending it.

    A test switch must never hand voicemail to the host's real MTA (traffic leaves loopback),
    and a kept file lets a test read what the agent would have received. The switch passes
    the recipient only on the command line (``-f <from> <to>``), so the script puts its
    arguments in front of the mail as a first header, ``X-Test-Mailer-Args``.
    """
    mail_dir.mkdir(parents=True, exist_ok=True)
    script.parent.mkdir(parents=True, exist_ok=True)
    folder = shlex.quote(str(mail_dir))
    script.write_text(
        "#!/bin/sh\n"
        "# fsrouter test switch: keep the mail instead of sending it (written, then renamed).\n"
        f"part=$(mktemp {folder}/.part-XXXXXXXX) || exit 1\n"
        "{ printf 'X-Test-Mailer-Args: %s\\n' \"$*\"; cat; } > \"$part\" || exit 1\n"
        f'mv "$part" {folder}/"mail-${{part##*-}}.eml"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script
