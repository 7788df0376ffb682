"""Voicemail, recorded by fsrouter itself: greeting, beep, ``record``, a row, a mail.

FreeSWITCH's ``record`` app writes the WAV file to a path fsrouter chooses (no caller or
switch text in it: ``<directory>/<user>/<UTC time>-<our own uuid4>.wav``); the message is
stored in the database (linked to the incident when an on-call option falls back to
voicemail) and the daemon's mailer sends it to the agent. fsrouter and FreeSWITCH share the
directory (the same host, or a shared mount): fsrouter creates it, the switch writes into
it, the mailer reads from it.

An agent records their own greeting by phone (feature code ``record_greeting``); it is kept
as ``<directory>/greetings/<user>.wav`` and used instead of the configured one.
"""

from __future__ import annotations

import os
import uuid as uuidlib
import wave
from pathlib import Path

from fsrouter.calls.call import Call
from fsrouter.calls.media import playable
from fsrouter.config import Config
from fsrouter.prompts.catalog import voicemail_greeting
from fsrouter.resilience.journal import Ref, create
from fsrouter.store import queries, replay
from fsrouter.store.db import make_private_dirs

# The directory is shared with FreeSWITCH (often another user in the same group).
DIRECTORY_MODE = 0o770


def greeting_path(config: Config, user_id: str) -> Path:
    return Path(config.voicemail.directory) / "greetings" / f"{user_id}.wav"


def recording_path(config: Config, user_id: str, call: Call) -> Path:
    """A new file in the user's directory, named only by us: the time and a uuid4 of our
    own (never the channel's Unique-ID, which the switch side chooses; issue 22.1)."""
    stamp = call.services.now().strftime("%Y%m%dT%H%M%SZ")
    return Path(config.voicemail.directory) / user_id / f"{stamp}-{uuidlib.uuid4()}.wav"


def wav_seconds(path: Path) -> float | None:
    """The length of a WAV recording, or None when there is no readable file."""
    try:
        with wave.open(str(path), "rb") as audio:
            rate = audio.getframerate()
            return audio.getnframes() / rate if rate else None
    except (OSError, EOFError, wave.Error):
        return None


def _greeting(config: Config, user_id: str) -> str:
    recorded = greeting_path(config, user_id)
    if recorded.is_file():
        return str(recorded)
    return playable(voicemail_greeting(config.users[user_id]), config)


def record(call: Call, path: Path, config: Config) -> float | None:
    """Beep, then record to ``path`` until ``#``, silence, the limit or hang-up; seconds."""
    make_private_dirs(path.parent, DIRECTORY_MODE)
    settings = config.voicemail
    call.run("set", "playback_terminators=#")
    call.run("playback", config.tone("beep"))
    call.run("record", f"{path} {settings.max_seconds} {settings.silence_threshold} "
                       f"{settings.silence_seconds}", timeout=settings.max_seconds + 30)
    return wav_seconds(path)


def leave_voicemail(call: Call, user_id: str, incident_id: int | Ref | None = None) -> str:
    """The caller leaves a message for ``user_id``; returns the call's outcome."""
    config = call.services.config
    if call.run("answer") is None:
        return call.unanswered()
    call.run("set", "playback_terminators=#")  # the caller may skip the greeting
    call.run("playback", _greeting(config, user_id))
    path = recording_path(config, user_id, call)
    seconds = record(call, path, config) if not call.gone.is_set() else None
    if seconds is None or seconds < config.voicemail.min_seconds:
        call.log.info("voicemail.empty", user=user_id, seconds=seconds)
        _discard(path)
        return "voicemail_empty"
    # While the store is away the journal writes the row later (by its path, once): the
    # recording is on disk, and the mailer sends it once the row exists.
    row = create(queries.record_voicemail, user_id, str(path), call.services.now(),
                 call_uuid=call.uuid, caller_number=call.caller_number,
                 caller_name=call.caller_name, duration_s=round(seconds, 2),
                 incident_id=incident_id, host=call.services.host,
                 later=replay.record_voicemail_once)
    voicemail_id = row if isinstance(row, Ref) else row.id
    call.log.info("voicemail.left", user=user_id, seconds=round(seconds, 1),
                  voicemail_id=voicemail_id)
    call.services.notify("voicemail.left", {
        "voicemail_id": voicemail_id, "user": user_id, "incident_id": incident_id,
        "caller_number": queries.clean_caller_text(call.caller_number),
        "caller_name": queries.clean_caller_text(call.caller_name),
        "duration_s": round(seconds, 2)})
    return "voicemail"


def record_greeting(call: Call, user_id: str) -> bool:
    """An agent records their greeting by phone; True when a usable one was saved."""
    config = call.services.config
    target = greeting_path(config, user_id)
    draft = target.with_suffix(".new.wav")
    seconds = record(call, draft, config)
    if seconds is None or seconds < 1:
        _discard(draft)
        return False
    os.replace(draft, target)  # the old greeting stays until a good new one exists
    call.log.info("voicemail.greeting_recorded", user=user_id, seconds=round(seconds, 1))
    return True


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
