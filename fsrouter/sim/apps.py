"""Dialplan applications with FreeSWITCH semantics (mod_dptools, mod_fifo, mod_voicemail).

Each application is a function ``app(ctx) -> response`` where the response becomes
``Application-Response`` in CHANNEL_EXECUTE_COMPLETE (``_none_`` when nothing is set).
"""

from __future__ import annotations

import os
import re
import struct
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gevent
import gevent.queue

from fsrouter.sim.channel import Channel
from fsrouter.sim.media import play_ms
from fsrouter.sim.originate import split_args

if TYPE_CHECKING:
    from fsrouter.sim.switch import Simulator

NONE = "_none_"
HANGUP = object()


@dataclass
class AppContext:
    sim: Simulator
    chan: Channel
    name: str
    arg: str

    def sleep(self, ms: int) -> bool:
        """Sleep simulated ms; False if the channel hung up (or is transferred) meanwhile."""
        gevent.wait([self.chan.hungup, self.chan.breaking], count=1,
                    timeout=self.sim.clock.real(ms / 1000.0))
        return self.chan.ready

    def next_digit(self, ms: int) -> str | None:
        """Dequeue one DTMF digit (firing the DTMF event) within ms; None on timeout/hangup."""
        try:
            timeout = None if ms < 0 else self.sim.clock.real(ms / 1000.0)
            digit = self.chan.dtmf.get(timeout=timeout)
        except gevent.queue.Empty:
            return None
        if digit is None or not self.chan.ready:
            self.chan.dtmf.put(None)
            return None
        self.sim.fire_dtmf(self.chan, digit)
        return digit

    def play(self, path: str, terminators: str) -> tuple[str, str]:
        """Play a file; returns (response, digit that stopped it or '')."""
        self.sim.note_prompt(self.chan, path)
        total = play_ms(path, self.sim.file_ms)
        if not path.startswith(("tone_stream://", "silence_stream://", "local_stream://")):
            if self.sim.missing_file(path):
                return "FILE NOT FOUND", ""
        remaining = total
        while remaining != 0:
            slice_ms = remaining if remaining > 0 else 60_000
            digit = self.next_digit(slice_ms)
            if not self.chan.ready:
                return "PLAYBACK ERROR", ""
            if digit is None:
                remaining = 0 if remaining > 0 else -1
                continue
            if terminators == "any" or digit in terminators:
                return "FILE PLAYED", digit
        self._playback_vars(total)
        return "FILE PLAYED", ""

    def _playback_vars(self, ms: int) -> None:
        ms = max(ms, 0)
        samples = ms * 8
        for name, value in (("playback_last_offset_pos", samples), ("playback_seconds", ms // 1000),
                            ("playback_ms", ms), ("playback_samples", samples)):
            self.chan.set_var(name, str(value))


AppFunc = Callable[[AppContext], str]


def app_answer(ctx: AppContext) -> str:
    ctx.sim.answer(ctx.chan)
    return NONE


def app_pre_answer(ctx: AppContext) -> str:
    ctx.sim.pre_answer(ctx.chan)
    return NONE


def app_playback(ctx: AppContext) -> str:
    terms = ctx.chan.get_var("playback_terminators", "*")
    terms = "" if terms == "none" else terms
    response, digit = ctx.play(ctx.arg, terms)
    if digit:
        ctx.chan.set_var("playback_terminator_used", digit)
    return response


def app_set(ctx: AppContext) -> str:
    name, _, value = ctx.arg.partition("=")
    if name:
        ctx.chan.set_var(name.strip(), value)
    return NONE


def app_multiset(ctx: AppContext) -> str:
    """``multiset [^^<delimiter>]a=1 b=2`` (mod_dptools: split on the delimiter, a space by
    default, each part set as ``set`` does)."""
    arg, delimiter = ctx.arg, " "
    if arg.startswith("^^") and len(arg) > 2:
        arg, delimiter = arg[3:], arg[2]
    for part in arg.split(delimiter):
        name, _, value = part.partition("=")
        if name:
            ctx.chan.set_var(name.strip(), value)
    return NONE


def app_unset(ctx: AppContext) -> str:
    ctx.chan.set_var(ctx.arg.strip(), None)
    return NONE


def app_sleep(ctx: AppContext) -> str:
    ms = int(ctx.arg) if ctx.arg.strip().isdigit() else 0
    ctx.sleep(ms)
    return NONE


def app_hangup(ctx: AppContext) -> str:
    ctx.sim.hangup(ctx.chan, ctx.arg.strip() or "NORMAL_CLEARING")
    return NONE


def app_log(ctx: AppContext) -> str:
    return NONE


def app_speak(ctx: AppContext) -> str:
    ctx.sim.note_prompt(ctx.chan, "speak:" + ctx.arg)
    ctx.sleep(60 * len(ctx.arg))
    return NONE


def app_park(ctx: AppContext) -> str:
    """Wait for the hang-up; the park loop dequeues DTMF (firing DTMF events) meanwhile."""
    while ctx.chan.ready:
        if ctx.next_digit(-1) is None and ctx.chan.ready:
            # Woken by a bridge (the None marker): no busy loop.
            gevent.wait([ctx.chan.hungup, ctx.chan.breaking], count=1)
    return NONE


RESPOND_CAUSES = {"486": "USER_BUSY", "600": "USER_BUSY", "404": "UNALLOCATED_NUMBER",
                  "480": "NO_USER_RESPONSE", "403": "CALL_REJECTED", "603": "CALL_REJECTED",
                  "503": "NORMAL_TEMPORARY_FAILURE"}


def app_respond(ctx: AppContext) -> str:
    code = ctx.arg.split(" ")[0]
    if ctx.chan.answer_state == "answered":
        return NONE  # a response after answer is ignored by the endpoint
    if code.startswith(("18",)):
        ctx.sim.pre_answer(ctx.chan)
        return NONE
    ctx.sim.hangup(ctx.chan, RESPOND_CAUSES.get(code, "NORMAL_CLEARING"))
    return NONE


def collect(ctx: AppContext, max_digits: int, terminators: str, first_ms: int,
            digit_ms: int, first: str = "") -> tuple[str, str]:
    """Collect digits after a prompt; returns (digits, terminator used)."""
    digits = ""
    pending = first
    wait = first_ms
    while len(digits) < max_digits:
        digit = pending or ctx.next_digit(wait)
        pending = ""
        if digit is None:
            break
        if digit in terminators:
            return digits, digit
        digits += digit
        wait = digit_ms
    return digits, ""


def app_play_and_get_digits(ctx: AppContext) -> str:
    args = split_args(ctx.arg)
    if len(args) < 9:
        return NONE  # real switch logs USAGE and returns
    mn, mx, tries, timeout = (int(a) if a.lstrip("-").isdigit() else 0 for a in args[:4])
    terms, prompt, bad, var, regex = args[4:9]
    digit_ms = int(args[9]) if len(args) > 9 and args[9].isdigit() else max(timeout, 1000)
    timeout = max(timeout, 1000)
    terms = "" if terms == "none" else terms.lstrip("=").replace("+", "").replace("x", "")
    for attempt in range(max(tries, 1)):
        ctx.chan.set_var(var, None)
        response, first = ctx.play(prompt, "0123456789*#")
        if not ctx.chan.alive:
            return NONE
        digits, used = collect(ctx, mx, terms, timeout, digit_ms, first)
        if used:
            ctx.chan.set_var("read_terminator_used", used)
        ok = len(digits) >= mn and _matches(regex, digits)
        if ok and digits:
            ctx.chan.set_var("read_result", "success")
            ctx.chan.set_var(var, digits)
            return NONE
        ctx.chan.set_var("read_result", "timeout" if not digits else "failure")
        if digits:
            ctx.chan.set_var(var + "_invalid", digits)
        if not ctx.chan.alive:
            return NONE
        if bad and attempt + 1 < max(tries, 1):
            ctx.play(bad, "")
    ctx.chan.set_var("read_result", "failure")
    if len(args) > 10 and args[10] not in ("", "''") and ctx.chan.ready:
        ctx.sim.transfer(ctx.chan, args[10])
    return NONE


def _matches(regex: str, digits: str) -> bool:
    try:
        return re.search(regex, digits) is not None
    except re.error:
        return False


def app_read(ctx: AppContext) -> str:
    args = split_args(ctx.arg)
    if len(args) < 6:
        return NONE
    mn, mx = (int(a) if a.isdigit() else 0 for a in args[:2])
    prompt, var, timeout, terms = args[2], args[3], int(args[4] or 0), args[5]
    digit_ms = int(args[6]) if len(args) > 6 and args[6].isdigit() else timeout
    ctx.sim.pre_answer(ctx.chan)
    _, first = ctx.play(prompt, "0123456789*#")
    digits, used = collect(ctx, mx, terms, max(timeout, 1000), digit_ms, first)
    ctx.chan.set_var(var, digits or None)
    ctx.chan.set_var("read_terminator_used", used or None)
    ok = len(digits) >= mn and bool(digits)
    ctx.chan.set_var("read_result", "success" if ok else "timeout" if not digits else "failure")
    return NONE


def write_wav(path: str, ms: int) -> None:
    """A small real 8 kHz mono WAV of silence-ish samples (what the switch would store)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    frames = max(ms, 100) * 8
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(struct.pack("<h", 0) * frames)


def record_until(ctx: AppContext, limit_ms: int, terminators: str) -> int:
    """Record until a terminator, the limit or hang-up; returns simulated ms recorded."""
    start = ctx.sim.clock.now()
    while True:
        left = limit_ms - int((ctx.sim.clock.now() - start) * 1000)
        if left <= 0:
            break
        digit = ctx.next_digit(left)
        if digit is None or digit in terminators:
            break
    return int((ctx.sim.clock.now() - start) * 1000)


def app_record(ctx: AppContext) -> str:
    args = ctx.arg.split(" ")
    path = args[0]
    limit = int(args[1]) * 1000 if len(args) > 1 and args[1].isdigit() else 3_600_000
    terms = ctx.chan.get_var("playback_terminators", "*")
    ms = record_until(ctx, limit, terms)
    try:
        write_wav(path, ms)
    except OSError:
        ctx.sim.hangup(ctx.chan, "DESTINATION_OUT_OF_ORDER")
        return NONE
    ctx.chan.set_var("record_ms", str(ms))
    ctx.chan.set_var("record_seconds", str(ms // 1000))
    ctx.sim.note_prompt(ctx.chan, "record:" + path)
    return NONE


def app_voicemail(ctx: AppContext) -> str:
    args = ctx.arg.split()
    if len(args) < 3 or args[0] in ("check", "auth"):
        return NONE
    profile, domain, box = args[0], args[1], args[2]
    greeting = ctx.sim.voicemail_greetings.get(f"{box}@{domain}", "silence_stream://5000")
    _, digit = ctx.play(greeting, "#")
    if not ctx.chan.ready:
        return NONE
    ctx.play("tone_stream://%(500,0,1000)", "")  # the beep
    ms = record_until(ctx, ctx.sim.voicemail_max_ms, "#")
    path = os.path.join(ctx.sim.storage_dir, "voicemail", profile, domain, box,
                        f"msg_{ctx.chan.uuid}.wav")
    write_wav(path, ms)
    ctx.sim.voicemail_left(ctx.chan, box, domain, path, ms)
    return NONE


def app_fifo(ctx: AppContext) -> str:
    args = ctx.arg.split()
    if len(args) < 2:
        return NONE
    if args[1] == "in":
        return ctx.sim.fifos.caller_in(ctx, args[0].split("!")[0], args[2:])
    if args[1] == "out":
        return ctx.sim.fifos.consumer_out(ctx, args[0], args[2:])
    return NONE


def app_bridge(ctx: AppContext) -> str:
    ctx.sim.bridge_app(ctx)
    return NONE


APPS: dict[str, AppFunc] = {
    "answer": app_answer, "pre_answer": app_pre_answer, "playback": app_playback,
    "play_and_get_digits": app_play_and_get_digits, "read": app_read, "set": app_set,
    "multiset": app_multiset, "export": app_set, "unset": app_unset, "sleep": app_sleep,
    "hangup": app_hangup,
    "log": app_log, "speak": app_speak, "park": app_park, "respond": app_respond,
    "record": app_record, "voicemail": app_voicemail, "fifo": app_fifo, "bridge": app_bridge,
}
