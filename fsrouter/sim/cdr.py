"""Variables FreeSWITCH adds at CS_REPORTING (the CDR set seen in CHANNEL_HANGUP_COMPLETE)."""

from __future__ import annotations

import time

from fsrouter.sim.channel import Q850, Channel


def _stamp(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1e6)) if us else ""


def add_vars(chan: Channel, now: float) -> None:
    t = chan.times
    start, answer, bridge = t.get("created", 0), t.get("answered", 0), t.get("bridged", 0)
    end = int(now * 1e6)
    last = getattr(chan, "last_app", ("", ""))
    s = chan.set_var
    s("hangup_cause", chan.hangup_cause)
    s("hangup_cause_q850", str(Q850.get(chan.hangup_cause, 16)))
    s("digits_dialed", chan.digits_dialed or "none")
    s("start_stamp", _stamp(start))
    s("profile_start_stamp", _stamp(bridge or start))
    s("answer_stamp", _stamp(answer))
    s("bridge_stamp", _stamp(bridge))
    s("end_stamp", _stamp(end))
    for name, us in (("start", start), ("profile_start", bridge or start), ("answer", answer),
                     ("bridge", bridge), ("last_hold", 0)):
        s(f"{name}_epoch", str(us // 1_000_000))
        s(f"{name}_uepoch", str(us))
    for name, value in (("hold_accum_seconds", 0), ("hold_accum_usec", 0), ("hold_accum_ms", 0)):
        s(name, str(value))
    for name in ("resurrect", "progress", "progress_media"):
        s(f"{name}_epoch", "0")
        s(f"{name}_uepoch", "0")
    s("end_epoch", str(end // 1_000_000))
    s("end_uepoch", str(end))
    s("last_app", last[0])
    s("last_arg", last[1])
    s("caller_id", f'"{chan.profile.caller_id_name}" <{chan.profile.caller_id_number}>')
    dur = end - start
    bill = end - answer if answer else 0
    wait = (bridge - start) if bridge else 0
    ans = (answer - start) if answer else 0
    for unit, div in (("sec", 1_000_000), ("msec", 1000), ("usec", 1)):
        pre = {"sec": "", "msec": "m", "usec": "u"}[unit]
        s(f"{pre}duration" if unit != "sec" else "duration", str(dur // div))
        s(f"bill{unit}", str(bill // div))
        s(f"progress{unit}", "0")
        s(f"answer{unit}", str(ans // div))
        s(f"wait{unit}", str(wait // div))
        s(f"progress_media{unit}", "0")
        s(f"flow_bill{unit}", str(dur // div))
    s("is_loopback", "1")
