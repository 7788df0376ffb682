"""Scripted phones reachable by an ordinary E.164 mobile number.

fsrouter dials people by their mobile or landline number through ``defaults.dial_template``.
To let a test configuration name scripted phones as real-looking numbers, the test switch (and
the simulator) read a German mobile number ``+49 1519 B TTTT NN`` as a scripted phone:
``B`` the behaviour, ``TTTT`` a delay in ms, ``NN`` a free id. With the dial template
``loopback/{number}/agents`` the call reaches the ``agents`` context, which maps it to the
named phone (``answer-<ms>-<id>`` and friends; see realswitch.py).
"""

from __future__ import annotations

import re

BEHAVIOURS = {"1": "answer", "2": "noanswer", "3": "busy", "4": "gone", "5": "press",
              "6": "hangup"}
CODES = {name: code for code, name in BEHAVIOURS.items()}
NUMBER = re.compile(r"^\+?491519([1-6])([0-9]{4})([0-9]{2})$")
TEST_DIAL_TEMPLATE = "loopback/{number}/agents"


def phone_number(behaviour: str, ms: int = 0, number: int = 0) -> str:
    """The E.164 number of a scripted phone, e.g. ``phone_number("answer", 300, 1)``."""
    if not 0 <= ms <= 9999 or not 0 <= number <= 99:
        raise ValueError("ms must be 0-9999 and number 0-99")
    return f"+491519{CODES[behaviour]}{ms:04d}{number:02d}"


def phone_name(dialled: str) -> str | None:
    """The scripted phone a number stands for (``answer-300-n01``), or None."""
    match = NUMBER.match(dialled)
    if match is None:
        return None
    code, ms, number = match.groups()
    kind, delay = BEHAVIOURS[code], str(int(ms))
    suffix = f"n{number}"
    return {
        "answer": f"answer-{delay}-{suffix}",
        "noanswer": f"noanswer-{suffix}",
        "busy": f"busy-{suffix}",
        "gone": f"gone-{suffix}",
        "press": f"press-1-{delay}-{suffix}",
        "hangup": f"hangup-{delay}-{suffix}",
    }[kind]


def dialplan_extensions() -> str:
    """The ``agents`` context extensions that turn such numbers into the named phones."""
    targets = {
        "1": "answer-$2-n$3", "2": "noanswer-n$3", "3": "busy-n$3", "4": "gone-n$3",
        "5": "press-1-$2-n$3", "6": "hangup-$2-n$3",
    }
    rows = []
    for code, target in targets.items():
        rows.append(
            f'<extension name="phone-number-{code}"><condition field="destination_number" '
            f'expression="^\\+?491519({code})0*([0-9]+)([0-9]{{2}})$">'
            f'<action application="transfer" data="{target} XML agents"/>'
            "</condition></extension>")
    return "\n".join(rows)
