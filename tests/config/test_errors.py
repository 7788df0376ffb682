"""Broken configurations: every issue, exactly, with file, line and column."""

from pathlib import Path

import pytest

from fsrouter.config import ConfigError, load_config

SWITCH = "switch:\n  password_env: FSROUTER_ESL_PASSWORD\n"

USERS = SWITCH + """\
users:
  alice:
    name: Alice
    extension: "1001"
    phones: [{type: mobile, number: +49 151 23456789}]
policies:
  p1:
    levels:
      - targets: [{user: alice}]
"""

CASES = [
    ("public_default_password",
     "switch:\n  password: ClueCon\n",
     ["{f}:2:3: switch.password: the public default password 'ClueCon' is refused (exploits "
      "log in with published passwords); set a strong one via password_env or password_file"]),
    ("shipped_placeholder_password",
     "switch:\n  password: CHANGE-ME\n",
     ["{f}:2:3: switch.password: the placeholder password 'CHANGE-ME' is refused (exploits "
      "log in with published passwords); set a strong one via password_env or password_file"]),
    ("two_password_sources",
     "switch:\n  password: x\n  password_env: ESL\n",
     ["{f}:1:1: switch: give exactly one of password, password_env or password_file"]),
    ("switch_missing",
     "listener:\n  port: 8084\n",
     ["{f}:1:1: switch: required field missing"]),
    ("unknown_key_suggestion",
     SWITCH + "listener:\n  prot: 8084\n",
     ["{f}:4:3: listener.prot: unknown key (did you mean 'port'?)"]),
    ("unknown_top_level_section",
     SWITCH + "numbres: []\n",
     ["{f}:3:1: numbres: unknown key (did you mean 'numbers'?)"]),
    ("port_out_of_range",
     SWITCH + "listener:\n  port: 70000\n",
     ["{f}:4:3: listener.port: must be 1-65535, got 70000"]),
    ("bad_cidr",
     SWITCH + "listener:\n  allow: [10.0.0.1/8]\n",
     ["{f}:4:11: listener.allow[0]: must be an IP address or network like 10.0.0.0/8: "
      "10.0.0.1/8 has host bits set"]),
    ("reserve_not_below_max_calls",
     SWITCH + "listener:\n  max_calls: 20\n  reserved_calls: 20\n",
     ["{f}:5:3: listener.reserved_calls: must be smaller than max_calls (20), got 20"]),
    ("switch_address_not_allowed",
     SWITCH + "listener:\n  allow: [10.0.0.0/24]\n  switch_addresses: [10.0.1.5]\n",
     ["{f}:5:3: listener.switch_addresses: 10.0.1.5/32 is not within listener.allow: the "
      "switch could not connect"]),
    ("setup_timeout_out_of_range",
     SWITCH + "listener:\n  setup_timeout: 0\n",
     ["{f}:4:3: listener.setup_timeout: must be 1-60, got 0"]),
    ("digit_out_of_range",
     USERS + """\
numbers:
  - number: +49 30 23125000
    type: call_routing
    options:
      - {digit: 12, label: Infra, policy: p1}
""",
     ["{f}:16:10: numbers[0].options[0].digit: must be 1-9, got 12"]),
    ("duplicate_digit",
     USERS + """\
numbers:
  - number: +49 30 23125000
    type: call_routing
    options:
      - {digit: 1, label: Infra, policy: p1}
      - {digit: 1, label: Datenbank, policy: p1}
""",
     ["{f}:17:10: numbers[0].options[1].digit: digit 1 is already used by options[0]"]),
    ("too_many_options",
     USERS + "numbers:\n  - number: +49 30 23125000\n    type: call_routing\n    options:\n"
     + "".join(f"      - {{digit: {d % 9 + 1}, label: L{d}, policy: p1}}\n" for d in range(10)),
     ["{f}:15:5: numbers[0].options: must have 1-9 options, got 10",
      "{f}:25:10: numbers[0].options[9].digit: digit 1 is already used by options[0]"]),
    ("unknown_policy",
     USERS + """\
numbers:
  - number: +49 30 23125000
    type: call_routing
    options:
      - {digit: 1, label: Infra, policy: p2}
""",
     ["{f}:16:34: numbers[0].options[0].policy: unknown policy 'p2'"]),
    ("unknown_user_in_policy",
     USERS + "  p2:\n    levels:\n      - targets: [{user: bob}]\n",
     ["{f}:14:20: policies.p2.levels[0].targets[0].user: unknown user 'bob'"]),
    ("unknown_schedule",
     USERS + "  p2:\n    levels:\n      - targets: [{schedule: night}]\n",
     ["{f}:14:20: policies.p2.levels[0].targets[0].schedule: unknown schedule 'night'"]),
    ("unknown_queue",
     USERS + "numbers:\n  - {number: +49 30 23125000, type: queue, queue: sales}\n",
     ["{f}:13:44: numbers[0].queue: unknown queue 'sales'"]),
    ("unknown_agent",
     USERS + "numbers:\n  - {number: +49 30 23125000, type: agent, agent: alicia}\n",
     ["{f}:13:44: numbers[0].agent: unknown user 'alicia' (did you mean 'alice'?)"]),
    ("duplicate_number_after_normalising",
     USERS + """\
numbers:
  - {number: +49 30 23125000, type: unassigned}
  - {number: 030 23125000, type: unassigned}
  - {number: 004930 23125 000, type: unassigned}
defaults: {country: DE}
""",
     ["{f}:14:6: numbers[1].number: duplicates numbers[0] (both are +493023125000)",
      "{f}:15:6: numbers[2].number: duplicates numbers[0] (both are +493023125000)"]),
    ("invalid_phone_number",
     USERS + "numbers:\n  - {number: 030 12, type: unassigned}\ndefaults: {country: DE}\n",
     ["{f}:13:6: numbers[0].number: not a valid phone number: '030 12'"]),
    ("national_number_without_country",  # issue 19: it was silently read as German
     USERS + "numbers:\n  - {number: 0676 9876543, type: unassigned}\n",
     ["{f}:13:6: numbers[0].number: national number '0676 9876543' needs defaults.country "
      "(e.g. AT) to be read; set it, or write the number as +<country code> ..."]),
    ("number_with_expansion",
     USERS + "numbers:\n  - {number: \"${system(id)}\", type: unassigned}\n",
     ["{f}:13:6: numbers[0].number: not a phone number: character '$' is not allowed "
      "(digits, spaces, + - / ( ) . only)"]),
    ("missing_required_field",
     USERS + "numbers:\n  - number: +49 30 23125000\n    type: agent\n",
     ["{f}:13:5: numbers[0].agent: required field missing"]),
    ("missing_type",
     USERS + "numbers:\n  - number: +49 30 23125000\n",
     ["{f}:13:5: numbers[0].type: required field missing"]),
    ("unknown_type",
     USERS + "numbers:\n  - {number: +49 30 23125000, type: agnet}\n",
     ["{f}:13:31: numbers[0].type: must be one of call_routing, agent, queue, unassigned, "
      "custom, got 'agnet'"]),
    ("unknown_key_in_union_member",
     USERS + "numbers:\n  - {number: +49 30 23125000, type: agent, agent: alice, "
     "when_bsy: hangup}\n",
     ["{f}:13:58: numbers[0].when_bsy: unknown key (did you mean 'when_busy'?)"]),
    ("ring_timeout_range_and_typo",
     SWITCH + """\
policies:
  p1:
    levels:
      - targets: [{schedule: s}]
        ring_timout: 30
        ring_timeout: 200
schedules:
  s: {}
""",
     ["{f}:7:9: policies.p1.levels[0].ring_timout: unknown key (did you mean 'ring_timeout'?)",
      "{f}:8:9: policies.p1.levels[0].ring_timeout: must be 5-120, got 200"]),
    ("bad_strategy",
     SWITCH + "policies:\n  p1:\n    levels:\n      - {targets: [{schedule: s}], "
     "strategy: sequential}\nschedules: {s: {}}\n",
     ["{f}:6:36: policies.p1.levels[0].strategy: must be one of in_order, all_at_once, "
      "round_robin, got 'sequential'"]),
    ("queue_name_unsafe",
     SWITCH + "queues:\n  Sales Team: {}\n",
     ["{f}:4:3: queues['Sales Team']: queue name must match ^[a-z0-9_]+$, got 'Sales Team'"]),
    ("dial_string_unsafe",
     SWITCH + "numbers:\n  - {number: +49 30 23125000, type: custom, "
     "dial_string: \"sofia/gw/x,user/${y}\"}\n",
     ["{f}:4:45: numbers[0].dial_string: unsafe character '${{' in dial string "
      "'sofia/gw/x,user/${{y}}' (allowed: letters, digits, @ . _ : + - /)"]),
    ("sip_dial_string_with_comma",
     SWITCH + "users:\n  bob:\n    name: Bob\n    phones:\n"
     "      - {type: sip, dial_string: \"user/1001,user/1002\"}\n",
     ["{f}:7:21: users.bob.phones[0].dial_string: unsafe character ',' in dial string "
      "'user/1001,user/1002' (allowed: letters, digits, @ . _ : + - /)"]),
    ("file_path_with_space",
     SWITCH + "queues:\n  sales: {hold_music: /var/sounds/my music.wav}\n",
     ["{f}:4:11: queues.sales.hold_music: unsafe character ' ' in file name "
      "'/var/sounds/my music.wav' (allowed: letters, digits, _ . / : + = -)"]),
    ("tone_with_quote",
     SWITCH + "tones:\n  busy: \"tone_stream://%(480,480,425)';loops=-1\"\n",
     ["{f}:4:3: tones.busy: must be tone_stream://%(on,off,freq...);loops=N or similar, got "
      "\"tone_stream://%(480,480,425)';loops=-1\""]),
    ("bad_fallback",
     SWITCH + "queues:\n  sales: {fallback: \"voicemail:\"}\n",
     ["{f}:4:11: queues.sales.fallback: must be lower-case letters, digits, '_', '.' or '-', "
      "got ''"]),
    ("bad_time_window",
     SWITCH + """\
schedules:
  s:
    rotations:
      - users: []
        start: 2024-01-01 09:00
        length: 1fortnight
        restrictions:
          - {days: [mon, fri], from: "25:00", to: "18:00"}
""",
     ["{f}:6:9: schedules.s.rotations[0].users: must list at least one user",
      "{f}:8:9: schedules.s.rotations[0].length: must be a duration like 1w, 1d, 12h or 30m, "
      "got '1fortnight'",
      "{f}:10:32: schedules.s.rotations[0].restrictions[0].from: must be a time like 08:00 "
      "or 18:30, got '25:00'"]),
    ("unquoted_clock_is_not_sexagesimal",
     SWITCH + "schedules:\n  s:\n    rotations:\n      - users: [a]\n        start: 2024-01-01\n"
     "        length: 1w\n        restrictions: [{days: mon-fri, from: 08:00, to: 18:00}]\n"
     "users: {a: {name: A, phones: [{type: mobile, number: 0151 23456789}]}}\n"
     "holidays: BY\ndefaults: {country: DE}\n",
     ["{f}:11:1: holidays: unknown key (allowed: cluster, database, defaults, features, "
      "listener, metrics, numbers, policies, prompts, queues, schedules, smtp, switch, "
      "switches, tones, tts, two_way, users, voicemail, webhooks)"]),
    ("unknown_holiday_country",
     SWITCH + "schedules:\n  s: {holidays: XX}\n",
     ["{f}:4:7: schedules.s.holidays: unknown holiday country 'XX': the holidays library "
      "knows ISO codes like AT, CH, DE (did you mean 'XK'?)"]),
    ("unknown_holiday_subdivision",
     SWITCH + "schedules:\n  s:\n    holidays: CH-ZX\n",
     ["{f}:5:5: schedules.s.holidays: CH has no subdivision 'ZX' (known: AG, AI, AR, BE, BL, "
      "BS, FR, GE, GL, GR, JU, LU, NE, NW, OW, SG, SH, SO, SZ, TG, TI, UR, VD, VS, ZG, ZH, "
      "Stadt Zurich) "
      "(did you mean 'ZH'?)"]),
    ("unknown_holiday_subdivision_in_a_mapping",
     SWITCH + "schedules:\n  s:\n    holidays: {country: AT, subdivision: 10}\n",
     ["{f}:5:5: schedules.s.holidays: AT has no subdivision '10' (known: 1, 2, 3, 4, 5, 6, "
      "7, 8, 9) (did you mean '1'?)"]),
    ("bad_closure_day",
     SWITCH + "schedules:\n  s:\n    holidays: {closed: [12-24, 02-30]}\n",
     ["{f}:5:32: schedules.s.holidays.closed[1]: not a day of the year: '02-30'"]),
    ("unknown_timezone",
     SWITCH + "defaults:\n  timezone: Europe/Berlinn\n  country: XX\n",
     ["{f}:4:3: defaults.timezone: unknown time zone 'Europe/Berlinn' (e.g. Europe/Berlin)",
      "{f}:5:3: defaults.country: unknown country code 'XX' (ISO 3166 like DE, AT, CH)"]),
    ("timezone_longer_than_a_file_name",  # zoneinfo raised OSError (ENAMETOOLONG): a crash
     SWITCH + "defaults:\n  timezone: '" + "9" * 300 + "'\n",
     ["{f}:4:3: defaults.timezone: unknown time zone '" + "9" * 40 + "...' (e.g. Europe/Berlin)"]),
    ("duplicate_yaml_key",
     SWITCH + "users:\n  a: {name: A}\n  a: {name: B}\n",
     ["{f}:5:3: users.a: duplicate key (first defined at line 4)"]),
    ("yaml_syntax_error",
     SWITCH + "users: [a, b\n",
     ["{f}:4:1: (yaml): while parsing a flow sequence: did not find expected ',' or ']'"]),
    ("wrong_shape",
     SWITCH + "numbers:\n  number: +49 30 23125000\n",
     ["{f}:3:1: numbers: must be a list, got a mapping"]),
    ("not_a_mapping_item",
     SWITCH + "numbers:\n  - +49 30 23125000\n",
     ["{f}:4:5: numbers[0]: must be a mapping, got '+49 30 23125000'"]),
    ("agent_without_extension",
     SWITCH + "users: {bob: {name: Bob}}\n"
     "numbers:\n  - {number: 030 23125000, type: agent, agent: bob}\n"
     "defaults: {country: DE}\n",
     ["{f}:5:41: numbers[0].agent: user 'bob' has no SIP phone or extension to ring"]),
    ("on_call_user_without_phone",
     SWITCH + "users: {bob: {name: Bob, phones: [{type: sip, dial_string: user/1001}]}}\n"
     "policies: {p: {levels: [{targets: [{user: bob}]}]}}\n",
     ["{f}:4:37: policies.p.levels[0].targets[0].user: user 'bob' has no mobile or landline "
      "phone to call"]),
    ("tts_text_with_pipe",
     USERS + "numbers:\n  - number: 030 23125000\n    type: call_routing\n    options:\n"
     "      - {digit: 1, label: \"Infra|x\", policy: p1}\ndefaults: {country: DE}\n",
     ["{f}:16:20: numbers[0].options[0].label: text must not contain '|'"]),
    ("password_in_env_var_name",
     "switch:\n  password_env: \"$(cat /etc/shadow)\"\n",
     ["{f}:2:3: switch.password_env: must be an environment variable name like "
      "FSROUTER_ESL_PASSWORD, got '$(cat /etc/shadow)'"]),
]

def _issues(tmp_path: Path, text: str) -> tuple[str, list[str]]:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(path), [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_config_reports_exact_issues(tmp_path, text, expected):
    file, issues = _issues(tmp_path, text)
    assert issues == [line.format(f=file) for line in expected]


def test_cases_are_distinct_and_many():
    assert len({c[0] for c in CASES}) == len(CASES) >= 20
    assert len({c[1] for c in CASES}) == len(CASES)


def test_all_errors_are_reported_at_once(tmp_path):
    text = USERS + """\
listener: {port: 0}
numbers:
  - number: +49 30 23125000
    type: call_routing
    options:
      - {digit: 0, label: Infra, policy: nope}
  - {number: 030 23125000, type: queue, queue: sales}
defaults: {country: DE}
"""
    file, issues = _issues(tmp_path, text)
    assert issues == [
        f"{file}:12:12: listener.port: must be 1-65535, got 0",
        f"{file}:17:10: numbers[0].options[0].digit: must be 1-9, got 0",
        f"{file}:17:34: numbers[0].options[0].policy: unknown policy 'nope'",
        f"{file}:18:6: numbers[1].number: duplicates numbers[0] (both are +493023125000)",
        f"{file}:18:41: numbers[1].queue: unknown queue 'sales'",
    ]


def test_error_message_lists_every_issue(tmp_path):
    file, _ = _issues(tmp_path, "switch: {password: ClueCon}\nlistener: {port: x}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    text = str(caught.value)
    assert text.splitlines()[0] == "2 configuration errors"
    assert f"{file}:2:12: listener.port: must be a whole number, got 'x'" in text


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "{f}:1:1: (root): the file is empty"),
    (b"- a\n- b\n", "{f}:1:1: (root): must be a mapping of sections (switch, users, numbers, ...)"),
    (b"switch: {password: \xff}\n", "{f}:1:1: (file): not valid UTF-8"),
])
def test_unusable_files(tmp_path, content, expected):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(i) for i in caught.value.issues] == [expected.format(f=path)]


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(i) for i in caught.value.issues] == [
        f"{path}:1:1: (file): cannot read: No such file or directory"]


def test_alias_bomb_is_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, "
              f"*a{i-1}, *a{i-1}, *a{i-1}]" for i in range(1, 9)]
    file, issues = _issues(tmp_path, "\n".join(lines) + "\n")
    assert len(issues) == 1 and "(alias expansion?)" in issues[0]
