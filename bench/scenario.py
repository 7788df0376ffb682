"""The benchmark's call script, shared by the three applications and the simulator side.

One hotline number with two menu options:

- key 1, the complete call: the first phone does not answer (rings out after 5 s of
  simulated time), the second answers at once, mod_fifo bridges it to the caller, the caller
  hangs up 1 s later;
- key 2, the waiting caller: its only phone rings for 120 s, so the caller sits in the queue
  (the memory measurement).

fsrouter reads this from a YAML file written here. The floor and greenswitch applications get
a :class:`Flow`: the same command arguments, computed once from that configuration with
fsrouter's own functions, so all three put the same bytes on the wire.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from fsrouter.esl.escape import originate_command
from fsrouter.sim import CallerScript, Press
from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number

ROUTING_NUMBER = "+493040001000"
CALLER_NUMBER = "+4915112345678"
CALLER_NAME = "Erika Mustermann"
MENU_TONE = "tone_stream://%(300,200,440);loops=2"
HOLD_MUSIC = "tone_stream://%(1000,0,350);loops=-1"
PASSWORD_ENV = "FSR_BENCH_ESL_PASSWORD"
COMPLETE_DIGIT = "1"
WAIT_DIGIT = "2"
RING_TIMEOUT = 5  # the no-answer attempt: the configuration's minimum
WAIT_RING_TIMEOUT = 120  # the waiting caller's phone: the configuration's maximum
PHONES = {
    "anna": phone_number("noanswer", 0, 1),
    "bernd": phone_number("answer", 0, 2),
    "carla": phone_number("noanswer", 0, 3),
}
QUEUE_EXIT_KEY = "#"
MAX_WAIT = 600


def fsrouter_config(db_path: Path, max_calls: int) -> dict[str, Any]:
    """The daemon's configuration: the hotline above, SQLite at ``db_path``."""
    users = {uid: {"name": uid.title(), "phones": [{"type": "mobile", "number": number}]}
             for uid, number in PHONES.items()}
    option = {"prompt": MENU_TONE, "hold_music": HOLD_MUSIC}
    return {
        "listener": {"bind": "127.0.0.1", "max_calls": max_calls},
        "switch": {"password_env": PASSWORD_ENV},
        "database": {"url": f"sqlite:///{db_path}"},
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en", "country": "DE"},
        "users": users,
        "policies": {
            "oncall": {"press_to_accept": False, "levels": [
                {"targets": [{"user": "anna"}, {"user": "bernd"}],
                 "ring_timeout": RING_TIMEOUT}]},
            "waiting": {"press_to_accept": False, "levels": [
                {"targets": [{"user": "carla"}], "ring_timeout": WAIT_RING_TIMEOUT}]},
        },
        "numbers": [{
            "number": ROUTING_NUMBER, "type": "call_routing", "skip_menu_if_single": False,
            "menu": {"tries": 1, "timeout_s": 5},
            "options": [
                {"digit": int(COMPLETE_DIGIT), "label": "Datenbank", "policy": "oncall",
                 **option},
                {"digit": int(WAIT_DIGIT), "label": "Warteschlange", "policy": "waiting",
                 **option},
            ],
        }],
    }


def write_config(workdir: Path, max_calls: int) -> Path:
    path = workdir / "fsrouter.yaml"
    config = fsrouter_config(workdir / "fsrouter.db", max_calls)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
    return path


@dataclass(frozen=True)
class Flow:
    """What the floor and greenswitch applications send, per menu key."""

    menu_arg: str
    menu_variable: str
    queues: dict[str, str]  # digit -> queue name
    labels: dict[str, str]  # digit -> option label (the called phone's display name)
    phones: dict[str, list[tuple[str, int]]]  # digit -> [(dial string, ring timeout)]
    hold_music: str
    routing_number: str

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), "utf-8")

    @classmethod
    def load(cls, path: Path) -> Flow:
        data = json.loads(path.read_text("utf-8"))
        data["phones"] = {k: [tuple(p) for p in v] for k, v in data["phones"].items()}
        return cls(**data)

    def queue_args(self, digit: str) -> list[tuple[str, str]]:
        """The applications fsrouter runs to queue the caller (multiset, fifo in)."""
        from fsrouter.calls.call import variable_runs

        variables = {"fifo_caller_exit_key": QUEUE_EXIT_KEY,
                     "fifo_orbit_exten": f"_continue_:{MAX_WAIT}"}
        return [*variable_runs(variables),
                ("fifo", f"{self.queues[digit]} in undef {self.hold_music}")]

    def leg_command(self, digit: str, call_uuid: str, caller_name: str, dial: str,
                    ring_timeout: int, leg_uuid: str) -> str:
        """The ``originate`` fsrouter's dialer sends for one phone (same variables)."""
        variables = {
            "origination_uuid": leg_uuid,
            "originate_timeout": str(ring_timeout),
            "ignore_early_media": "true",
            "fifo_bridge_uuid": call_uuid,
            "fifo_bridge_uuid_required": "true",
            "origination_caller_id_number": self.routing_number,
            # As fsrouter's call_routing._display_name (the smoke test compares them); caller
            # text goes only through the escaping module, as in fsrouter.
            "origination_caller_id_name": f"{self.labels[digit]} - {caller_name or 'unknown'}",
        }
        return originate_command(variables, dial, "fifo", f"{self.queues[digit]} out nowait")


def flow_from_config(config_path: Path) -> Flow:
    """The Flow for the floor and greenswitch, from fsrouter's configuration and functions."""
    from fsrouter.calls.call_routing import MENU_VARIABLE, queue_name
    from fsrouter.calls.media import concatenated, menu_argument, menu_prompts
    from fsrouter.config import load_config
    from fsrouter.config.schema import CallRoutingNumber
    from fsrouter.routing.menu import build_menu

    config = load_config(config_path)
    number = config.number_by_e164(ROUTING_NUMBER)
    assert isinstance(number, CallRoutingNumber)
    plan = build_menu(number, config.defaults.language)
    prompt = concatenated(menu_prompts(plan, first_play=True), config.tts)
    phones: dict[str, list[tuple[str, int]]] = {}
    for option in number.options:
        level = config.policies[option.policy].levels[0]
        phones[str(option.digit)] = [
            (config.defaults.dial_string(config.users[t.user].phones[0].number),
             level.ring_timeout) for t in level.targets if t.user is not None]
    return Flow(
        menu_arg=menu_argument(plan, prompt, MENU_VARIABLE), menu_variable=MENU_VARIABLE,
        queues={str(o.digit): queue_name(number, o) for o in number.options},
        labels={str(o.digit): o.label for o in number.options}, phones=phones,
        hold_music=HOLD_MUSIC, routing_number=ROUTING_NUMBER)


def caller_script(digit: str) -> CallerScript:
    """The caller presses ``digit`` 0.1 s into the menu and hangs up 1 s after the bridge.

    (The simulator reports "bridged" as the caller leaves the queue, a moment before mod_fifo
    bridges: a much shorter talk could hang up before the bridge on a loaded simulator.)
    """
    return CallerScript(presses=[Press(digit, at_s=0.1, after="menu")], hangup_in="bridged",
                        hangup_delay_s=1.0)
