"""The shipped FreeSWITCH snippets (freeswitch_conf/) are well-formed and agree with
config.example.yaml: the socket target is the listener, the event socket is the switch
connection (loopback, ACL, a placeholder password the config refuses), and every queue the
config can name works with the shipped fifo.conf.xml.

What mod_fifo does with a queue nobody declared, read in FreeSWITCH's source
(src/mod/applications/mod_fifo/mod_fifo.c, fifo_function): the `fifo` app looks the name up
and, when it is missing, calls create_node() itself (for `in` and for `out`) — so undeclared
queues are created on first use. Before that it splits its argument at spaces, a consumer's
queue list at commas, and cuts an importance suffix at the last `!`; `manual_calls` is a
reserved node that mod_fifo creates at load and refuses to configure. The last test checks the
dynamic creation on the real switch.
"""

from __future__ import annotations

import ipaddress
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import gevent
import pytest
from pydantic import ValidationError

from fsrouter.calls.call_routing import queue_name
from fsrouter.config import Config, ConfigError, load_config
from fsrouter.config.schema import Switch

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "freeswitch_conf"
EXAMPLE = REPO / "config.example.yaml"
# What FreeSWITCH's pre-processor understands in the shipped files (switch_xml.c).
PREPROCESS_COMMANDS = {"set", "include"}
MOD_FIFO_RESERVED = "manual_calls"
# The fifo app's argument is split at ' ', a consumer's list at ',', importance after '!';
# '@' gives a node no domain. Our names must be plain words.
SAFE_FIFO_NAME = re.compile(r"^[a-z0-9_]{1,64}$")


def xml_files() -> list[Path]:
    return sorted(CONF.rglob("*.xml"))


def params(relative: str) -> dict[str, str]:
    root = ET.parse(CONF / relative).getroot()
    return {p.get("name"): p.get("value") for p in root.iter("param")}


@pytest.fixture(scope="module")
def example() -> Config:
    return load_config(EXAMPLE)


def all_queue_names(config: Config) -> set[str]:
    """Every queue a call can enter: the inbound queues and each option's queue."""
    names = set(config.queues)
    for number in config.numbers:
        for option in getattr(number, "options", ()):
            names.add(queue_name(number, option))
    return names


# -- well-formed ---------------------------------------------------------------------------


def test_there_are_snippets_to_check():
    names = {p.relative_to(CONF).as_posix() for p in xml_files()}
    assert {"dialplan/fsrouter.xml", "autoload_configs/event_socket.conf.xml",
            "autoload_configs/fifo.conf.xml", "vars.fsrouter.xml"} <= names


@pytest.mark.parametrize("path", xml_files(), ids=lambda p: p.relative_to(CONF).as_posix())
def test_snippet_is_well_formed_xml(path: Path):
    root = ET.parse(path).getroot()  # raises ParseError on malformed XML
    assert root.tag in ("configuration", "include")
    # X-PRE-PROCESS lines are ordinary elements here; each must be one the switch knows.
    for line in root.iter("X-PRE-PROCESS"):
        assert line.get("cmd") in PREPROCESS_COMMANDS
        assert line.get("data")


# -- the dialplan hands calls to the listener ------------------------------------------------


def socket_targets() -> list[tuple[str, str]]:
    """(tag, data) of every socket action in the dialplan extension."""
    root = ET.parse(CONF / "dialplan/fsrouter.xml").getroot()
    return [(el.tag, el.get("data", "")) for el in root.iter()
            if el.tag in ("action", "anti-action") and el.get("application") == "socket"]


def vars_targets() -> list[str]:
    """fsrouter_target values set in vars.fsrouter.xml (none by default)."""
    root = ET.parse(CONF / "vars.fsrouter.xml").getroot()
    found = []
    for line in root.iter("X-PRE-PROCESS"):
        name, _, value = line.get("data", "").partition("=")
        if line.get("cmd") == "set" and name == "fsrouter_target":
            found.extend(value.split("|"))
    return found


def test_dialplan_default_target_is_the_configured_listener(example):
    default = [data for tag, data in socket_targets() if tag == "anti-action"]
    assert default == [f"{example.listener.bind}:{example.listener.port} async full"]


def test_every_socket_target_in_the_snippets_is_the_listener(example):
    defaults = [data.split()[0] for tag, data in socket_targets() if tag == "anti-action"]
    for target in defaults + vars_targets():
        host, _, port = target.rpartition(":")
        assert int(port) == example.listener.port
        assert ipaddress.ip_address(host) == ipaddress.ip_address(example.listener.bind)
        # The listener must accept the switch, which connects from the loopback address.
        assert any(ipaddress.ip_address(host) in net for net in example.listener.allow)


def test_dialplan_falls_back_when_the_daemon_is_down():
    root = ET.parse(CONF / "dialplan/fsrouter.xml").getroot()
    apps = [el.get("application") for el in root.iter() if el.tag == "action"]
    last_socket = max(i for i, app in enumerate(apps) if app == "socket")
    after = apps[last_socket + 1:]
    assert "playback" in after and after[-1] == "hangup"


# -- the event socket is the switch connection ---------------------------------------------


def test_event_socket_matches_the_switch_section(example):
    esl = params("autoload_configs/event_socket.conf.xml")
    assert int(esl["listen-port"]) == example.switch.port
    assert esl["listen-ip"] == example.switch.host
    assert ipaddress.ip_address(esl["listen-ip"]).is_loopback


def test_event_socket_has_an_acl():
    acl = params("autoload_configs/event_socket.conf.xml").get("apply-inbound-acl")
    assert acl == "loopback.auto"


def test_event_socket_password_is_the_placeholder_the_config_refuses(example, monkeypatch):
    password = params("autoload_configs/event_socket.conf.xml")["password"]
    assert password == "CHANGE-ME"
    with pytest.raises(ValidationError, match="placeholder"):
        Switch(host="127.0.0.1", port=8021, password=password)
    # The example reads it from the environment: refused there too, when it is resolved.
    monkeypatch.setenv(example.switch.password_env, password)
    with pytest.raises(ConfigError, match="placeholder"):
        example.switch.resolve_password()


# -- queues --------------------------------------------------------------------------------


def declared_fifos() -> set[str]:
    root = ET.parse(CONF / "autoload_configs/fifo.conf.xml").getroot()
    return {fifo.get("name") for fifo in root.iter("fifo")}


def test_fifo_conf_declares_no_members():
    root = ET.parse(CONF / "autoload_configs/fifo.conf.xml").getroot()
    assert root.findall(".//member") == []
    assert params("autoload_configs/fifo.conf.xml")[
        "delete-all-outbound-member-on-startup"] == "true"


def test_example_has_the_queues_this_test_expects(example):
    # Guards the next test against passing on an empty list.
    assert all_queue_names(example) == {"sales", "hotline_infra", "hotline_database"}


def test_every_configured_queue_is_declared_or_created_by_mod_fifo(example, tmp_path):
    # Also a config whose option has no queue of its own: it gets fsr_<digits>_<digit>.
    text = EXAMPLE.read_text(encoding="utf-8").replace("        queue: hotline_infra\n", "")
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    derived = load_config(tmp_path / "config.yaml")
    assert "fsr_493023125000_1" in all_queue_names(derived)
    declared = declared_fifos()
    for name in all_queue_names(example) | all_queue_names(derived):
        # Declared queues are fine; undeclared ones are created by the fifo app on first use,
        # provided the app reads the name as one queue and it is not mod_fifo's own.
        assert name in declared or (SAFE_FIFO_NAME.match(name) and name != MOD_FIFO_RESERVED)


def test_mod_fifo_creates_an_undeclared_queue_on_first_use(real_switch, fresh_id):
    queue = f"fsr_{re.sub(r'[^0-9]', '', fresh_id)}_1"  # the per-option form, never declared
    assert queue not in declared_fifos()
    assert real_switch.api(f"fifo count {queue}").strip() == "none"
    call = real_switch.originate(f"loopback/answer-0-{fresh_id}/agents",
                                 app=f"'&fifo({queue} in)'")
    try:
        assert call.result().startswith("+OK")
        deadline = time.monotonic() + 10
        reply = ""
        while time.monotonic() < deadline:
            reply = real_switch.api(f"fifo count {queue}").strip()
            if reply != "none" and reply.split(":")[2] == "1":
                break
            gevent.sleep(0.05)
        # name:consumers:callers:members:ringing:idle — one caller, no members.
        assert reply == f"{queue}:0:1:0:0:0"
    finally:
        real_switch.hangup(call.uuid)
