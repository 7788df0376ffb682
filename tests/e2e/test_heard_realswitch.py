"""What the caller hears, proven on the real switch: the prompts' audio found in a recording.

Each call records the audio that reaches the caller (``RealSwitch.place_call(record=...)``:
``record_session`` on the caller's loopback leg, read direction only), or that reaches the
agent's phone (the listening phone of the test switch), and :mod:`fsrouter.testing.audio`
finds the expected prompts in it, in order, by normalised cross-correlation (threshold
``audio.THRESHOLD``; scores are printed with ``-s``). One switch and one daemon serve the
module; each test uses its own numbers and phones.

The prompts are the ones the daemon rendered itself at start (fsrouter.prompts, espeak-ng):
the reference for each is the file its key names at 8 kHz (``prompts.rate_file``), the one
mod_sndfile opens for an 8 kHz caller. Hold music is a file of the test's (a short tune);
the tones are compared with the tone the configuration names, generated here the way
libteletone makes it.
"""

from __future__ import annotations

import uuid as uuidlib
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fsrouter import prompts
from fsrouter.config import load_config
from fsrouter.esl import Event
from fsrouter.testing import audio
from fsrouter.testing.audio import Audio, find_in_order, read_wav
from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.realswitch import RealSwitch, listen_number
from fsrouter.testing.waiting import wait_for
from fsrouter.testing.watcher import WATCHED, Watcher
from tests.e2e.daemon import Daemon

pytestmark = pytest.mark.realswitch

HOTLINE = "+493040007000"
BUSY_AGENT = "+493040007100"
VOICEMAIL_AGENT = "+493040007200"
SWAPPED = "+493040007300"  # the hotline's menu with options 1 and 2 swapped
SILENT = "+493040007400"  # the hotline's menu with option 1 silent
CUSTOMER = "+4915112345678"
LISTENER = 41  # the listening phone's id (its recording is RealSwitch.heard_by_phone(41))
ACCEPT_WAIT_MS = 3000  # the phone presses the key after the accept prompt (~1.7 s) is over
BUSY_TONE = "tone_stream://%(480,480,425);loops=-1"
BEEP = "tone_stream://%(800,0,1000)"

LABELS = ("Database", "Network", "Storage")
# The prompt keys (fsrouter.prompts.catalog) of what the tests listen for.
KEYS = {
    "greeting": "numbers[0].greeting",
    "option1": "numbers[0].options[0].prompt",
    "option2": "numbers[0].options[1].prompt",
    "option3": "numbers[0].options[2].prompt",
    "invalid": "numbers[0].menu.invalid",
    "goodbye": "numbers[0].menu.goodbye",
    "accept": "numbers[0].options[2].accept",
    "voicemail": "users.vera.voicemail.greeting",
}


@dataclass
class Heard:
    """The module's switch, daemon, watcher and reference clips."""

    switch: RealSwitch
    daemon: Daemon
    folder: Path
    watcher: Watcher | None = None  # one per test (see the heard fixture)
    clips: dict[str, Audio] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    # The file name each menu play ends with (its PLAYBACK_STOP), per prompt name.
    names: dict[str, str] = field(default_factory=dict)

    def call(self, number: str, name: str) -> tuple[str, str, Path]:
        """Place a recorded call; (caller uuid, the daemon's leg uuid, the recording)."""
        caller = str(uuidlib.uuid4())
        recording = self.folder / "heard" / f"{name}.wav"
        recording.parent.mkdir(exist_ok=True)
        self.switch.place_call(number, CUSTOMER, "Erika Mustermann", uuid=caller,
                               record=recording)
        b_leg = self.seen.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller)
        return caller, b_leg.uuid, recording

    @property
    def seen(self) -> Watcher:
        assert self.watcher is not None, "no watcher: use the heard fixture"
        return self.watcher

    @staticmethod
    def settle(path: Path, seconds: float = 0.3) -> None:
        """Wait until the recording has grown by ``seconds`` more (8 kHz, 16 bit): what was in
        flight through the loopback pair when an event said it was played is in the file."""
        def size() -> int:
            return path.stat().st_size if path.exists() else 0
        target = size() + int(seconds * 8000 * 2)
        wait_for(lambda: size() >= target, 10, f"{path} to grow by {seconds} s")

    def played(self, uuid: str, name: str) -> list[Event]:
        """PLAYBACK_STOP events of ``uuid`` for a file (or file_string) ending in ``name``."""
        return [e for e in self.seen.events if e.name == "PLAYBACK_STOP" and e.uuid == uuid
                and (e.get("Playback-File-Path") or "").endswith(name)]

    def wait_played(self, uuid: str, prompt: str, count: int = 1, timeout: float = 30) -> None:
        """Until ``prompt`` (a name of ``clips``) was played ``count`` times on ``uuid``."""
        name = self.names[prompt]
        wait_for(lambda: len(self.played(uuid, name)) >= count, timeout,
                 f"{prompt} ({name}) played {count} times on {uuid}")

    def ended(self, *uuids: str, timeout: float = 30) -> None:
        for uuid in uuids:
            self.seen.wait("CHANNEL_HANGUP_COMPLETE", timeout=timeout, **{"Unique-ID": uuid})

    def recording(self, path: Path) -> Audio:
        """The recording once the switch has closed it (the bug ends with the channel)."""
        def complete() -> Audio | None:
            try:
                heard = read_wav(path)
            except (OSError, EOFError, ValueError, wave.Error):
                return None
            return heard if heard.seconds > 0 else None
        return wait_for(complete, 10, f"the recording {path}")


def make_files(folder: Path) -> tuple[dict[str, Audio], dict[str, Path]]:
    """The test's own sounds: hold music (a four-note tune) and a silent "recording"."""
    notes = [audio.tone(hz, 350, 50) for hz in (523.25, 659.25, 783.99, 659.25)]
    clips = {"music": audio.concat(*notes)}
    files = {"music": folder / "music.wav", "silence": folder / "silence.wav"}
    audio.write_wav(files["music"], clips["music"])
    audio.write_wav(files["silence"], audio.silence(2.0))
    return clips, files


def rendered(config_path: Path) -> tuple[dict[str, Audio], dict[str, str]]:
    """The daemon's rendered prompts (8 kHz files) and the file name each is played as."""
    config = load_config(config_path)
    clips, names = {}, {}
    for name, key in KEYS.items():
        played = prompts.prompt_path(config, key)
        assert Path(played).name.startswith("tts-"), (key, played)  # rendered, not a file
        clips[name] = read_wav(prompts.rate_file(config, key, 8000))
        names[name] = Path(played).name
    return clips, names


def sip_phone(number: int) -> dict[str, str]:
    return {"type": "sip", "dial_string": f"loopback/{phone_number('answer', 0, number)}/agents"}


def hotline(number: str, music: Path, prompt1: dict[str, str], prompt2: dict[str, str]) -> dict:
    """A hotline number; options 1 and 2 may say something else than their label."""
    def option(digit: int, policy: str, prompt: dict[str, str]) -> dict:
        return {"digit": digit, "label": LABELS[digit - 1], "policy": policy,
                "hold_music": str(music), **prompt}

    return {"number": number, "type": "call_routing", "skip_menu_if_single": False,
            "greeting_text": "Welcome to the hotline.",
            "menu": {"tries": 2, "timeout_s": 2},
            "options": [option(1, "ringing", prompt1), option(2, "ringing", prompt2),
                        option(3, "accept", {})]}


def hotline_config(files: dict[str, Path], folder: Path) -> dict:
    # The generated sentence of an option is "For <label>, press <digit>." (routing.menu).
    swapped = ({"prompt_text": f"For {LABELS[1]}, press 2."},
               {"prompt_text": f"For {LABELS[0]}, press 1."})
    music = files["music"]
    numbers = [hotline(HOTLINE, music, {}, {}), hotline(SWAPPED, music, *swapped),
               hotline(SILENT, music, {"prompt": str(files["silence"])}, {})]
    return {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en"},
        "voicemail": {"directory": str(folder / "voicemail")},
        "prompts": {"directory": str(folder / "prompts")},
        "tts": {"speed": 230},  # words a minute (150 by default): shorter calls
        "tones": {"busy": BUSY_TONE, "beep": BEEP},
        "users": {
            "anna": {"name": "Anna", "phones": [
                {"type": "mobile", "number": phone_number("noanswer", 0, 40)}]},
            "lena": {"name": "Lena", "phones": [
                {"type": "mobile", "number": listen_number(ACCEPT_WAIT_MS, LISTENER)}]},
            "bob": {"name": "Bob", "language": "en", "phones": [sip_phone(42)]},
            "vera": {"name": "Vera", "language": "en", "phones": [sip_phone(43)]},
        },
        "policies": {
            "ringing": {"levels": [{"targets": [{"user": "anna"}], "ring_timeout": 30}]},
            "accept": {"levels": [{"targets": [{"user": "lena"}], "ring_timeout": 10}],
                       "press_to_accept": True, "accept_timeout": 10},
        },
        "numbers": [*numbers,
                    {"number": BUSY_AGENT, "type": "agent", "agent": "bob"},
                    {"number": VOICEMAIL_AGENT, "type": "agent", "agent": "vera"}],
    }


@pytest.fixture(scope="module")
def module_setup(real_switch: RealSwitch,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Heard]:
    folder = tmp_path_factory.mktemp("heard")
    clips, files = make_files(folder)
    daemon = Daemon(folder, hotline_config(files, folder), real_switch.esl_endpoint())
    daemon.start()  # renders the prompts before it is ready
    spoken, names = rendered(daemon.config_path)
    clips.update(spoken)
    names["music"] = files["music"].name
    assert clips["accept"].seconds < ACCEPT_WAIT_MS / 1000 - 0.5  # heard before the key
    real_switch.route_to(daemon.port)
    # Bob is busy: the daemon's agent watcher clears stale flags when it first syncs.
    daemon.wait_logged("agents.resynced")
    with daemon.store() as queries:
        queries.set_presence("bob", datetime.now(UTC), state="logged_in", busy=True)
    try:
        yield Heard(real_switch, daemon, folder, clips=clips, files=files, names=names)
    finally:
        real_switch.route_to(1)
        assert daemon.stop() == 0, daemon.log()[-3000:]


@pytest.fixture
def heard(module_setup: Heard) -> Iterator[Heard]:
    """The module's set-up with an event watcher of this test's own."""
    events = [*WATCHED, "CHANNEL_ANSWER", "PLAYBACK_STOP"]
    watcher = Watcher(module_setup.switch.esl_endpoint(), events)
    module_setup.watcher = watcher
    try:
        yield module_setup
    finally:
        watcher.close()
        module_setup.watcher = None


def found(name: str, recording: Audio, clips: list[Audio], labels: list[str]) -> None:
    matches = find_in_order(recording, clips, names=labels)
    print(f"{name}: " + ", ".join(f"{label} {m.score:.3f}@{m.offset_s:.2f}s"
                                  for label, m in zip(labels, matches, strict=True)))


def test_menu_invalid_key_menu_again_then_goodbye(heard: Heard) -> None:
    caller, b_leg, path = heard.call(HOTLINE, "menu")
    heard.wait_played(b_leg, "option3")  # greeting and the options: one file_string
    heard.switch.send_dtmf(caller, "7")  # no such option
    heard.wait_played(b_leg, "option3", 2)  # the invalid prompt, the menu again
    heard.switch.send_dtmf(caller, "8")  # no such option, no try left: goodbye
    heard.ended(b_leg, caller)  # the daemon hangs up after the goodbye
    menu = ["option1", "option2", "option3"]
    labels = ["greeting", *menu, "invalid", *menu, "goodbye"]
    found("menu", heard.recording(path), [heard.clips[name] for name in labels], labels)


def test_hold_music_in_the_queue(heard: Heard) -> None:
    caller, b_leg, path = heard.call(HOTLINE, "queue")
    heard.wait_played(b_leg, "option3")
    heard.switch.send_dtmf(caller, "1")
    # mod_fifo plays the music in a loop: a second round has begun once the first is over.
    heard.wait_played(b_leg, "music", 2)
    heard.settle(path)
    heard.switch.hangup(caller)
    heard.ended(b_leg, caller)
    labels = ["greeting", "option1", "option2", "option3", "music", "music"]
    found("queue", heard.recording(path), [heard.clips[name] for name in labels], labels)


def test_press_to_accept_prompt_on_the_agents_leg(heard: Heard) -> None:
    caller, b_leg, _ = heard.call(HOTLINE, "accept")
    heard.wait_played(b_leg, "option3")
    heard.switch.send_dtmf(caller, "3")
    bridge = heard.seen.wait("CHANNEL_BRIDGE", timeout=30)
    assert bridge is not None
    heard.switch.hangup(caller)
    heard.ended(b_leg, caller)
    phone = heard.switch.heard_by_phone(LISTENER)
    wait_for(lambda: not [c for c in heard.switch.channels()], 10, "every leg gone")
    found("accept", heard.recording(phone), [heard.clips["accept"]], ["accept"])


def test_busy_tone(heard: Heard) -> None:
    caller, b_leg, path = heard.call(BUSY_AGENT, "busy")
    # Early media: the originate returns +OK at the pre-answer; the daemon then hangs up.
    heard.seen.wait("CHANNEL_HANGUP_COMPLETE", timeout=30, **{"Unique-ID": b_leg,
                                                               "Hangup-Cause": "USER_BUSY"})
    assert heard.seen.first("CHANNEL_ANSWER", **{"Unique-ID": b_leg}) is None
    # The daemon plays five rounds of the configured tone (endings.BUSY_LOOPS).
    expected = audio.tone_from_spec(BUSY_TONE, loops=5)
    recording = heard.recording(path)
    found("busy", recording, [expected], ["busy tone x5"])
    assert abs(audio.dominant_hz(recording) - 425) < 10


def test_voicemail_greeting_and_beep(heard: Heard) -> None:
    caller, b_leg, path = heard.call(VOICEMAIL_AGENT, "voicemail")
    heard.seen.wait("CHANNEL_EXECUTE", timeout=20, Application="record",
                    **{"Unique-ID": b_leg})
    heard.settle(path)
    heard.switch.hangup(caller)
    heard.ended(b_leg, caller)
    beep = audio.tone_from_spec(BEEP)
    found("voicemail", heard.recording(path), [heard.clips["voicemail"], beep],
          ["greeting", "beep"])


def test_a_swapped_or_silent_prompt_is_not_accepted(heard: Heard) -> None:
    """The same check fails when the configuration swapped two option prompts or pointed
    one at silence: the switch plays them, the recording does not carry the menu."""
    menu = ["greeting", "option1", "option2", "option3"]
    for number, name in ((SWAPPED, "swapped"), (SILENT, "silent")):
        caller, b_leg, path = heard.call(number, name)
        heard.wait_played(b_leg, "option3")
        heard.settle(path)
        heard.switch.hangup(caller)
        heard.ended(b_leg, caller)
        recording = heard.recording(path)
        with pytest.raises(audio.AudioMismatch) as refused:
            find_in_order(recording, [heard.clips[label] for label in menu], names=menu)
        print(f"{name}: {refused.value}")


@pytest.mark.parametrize("path", ["relative.wav", "/tmp/a b.wav", "/tmp/../etc/x.wav",
                                  "/tmp/x.mp3", "/tmp/x';hangup.wav"])
def test_a_recording_path_is_checked(path: str) -> None:
    """The path becomes part of an api_on_media command: only plain absolute .wav paths."""
    with pytest.raises(ValueError, match="recording path"):
        RealSwitch._recording("b2e593f2-e197-4dfe-b7de-3d72f7e9edeb", Path(path))
