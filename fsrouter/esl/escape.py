"""The one way caller-controlled text reaches FreeSWITCH.

FreeSWITCH 1.11.1 parses ``api originate {a=1,b=2}dial '&app(args)'`` in layers, and every
layer runs ``cleanup_separated_string`` (src/switch_utils.c), which strips one level of
single quotes and turns ``\\'`` ``\\\\`` ``\\<delim>`` ``\\n`` ``\\r`` ``\\t`` ``\\s`` into the
character they name:

- ``{...}`` block values: 3 layers: the API argument split on spaces, the block split on
  ``,`` (``switch_event_create_brackets``), the ``name=value`` split on ``=``.
- ``[...]`` block values: 5 layers: spaces, the failover split on ``|``, the leg split on
  ``,``, the block split on the internal marker ``\\x02``, then ``=``.

``originate_var`` escapes a value once per layer (innermost first), so ``'`` ``,`` ``\\``
spaces and the separators arrive byte-exact. What plain escaping cannot carry:

- ``}`` / ``]``: ``switch_find_end_paren`` counts brackets and ignores quotes and escapes.
  Unbalanced brackets are balanced with padding variables (``fsrouter_pad``) placed before
  and after the value, so the value itself arrives exact.
- ``:_:`` anywhere switches originate into enterprise mode (a plain ``strstr``). Inside the
  value it is written ``:''_:``; the empty quotes vanish one layer later.
- ``[`` blocks only: the comma pre-pass in switch_ivr_originate.c toggles on every ``'``,
  escaped or not, so after a value with an odd number of quotes the next ``,`` of the same
  block no longer separates. Put such a variable LAST in its ``[...]`` block. For the same
  reason no padding variable can follow it: an unmatched ``[`` in such a value becomes
  ``［`` (U+FF3B, logged) instead.

Replaced, because no switch-side decoding exists and they are dangerous downstream
(each replacement is logged with the variable name, never the text):

- control characters (category Cc: NUL, CR, LF, TAB, DEL, C1) become a space: a newline would
  end the ESL command, NUL truncates, ``\\x01``/``\\x02`` are originate's internal markers,
  and a display name with line breaks reaches SIP headers.
- ``${`` becomes ``＄{`` (U+FF04). originate itself does not expand the caller ID name, but
  FreeSWITCH expands variable *values* recursively, so any later ``${caller_id_name}`` in a
  dialplan or app argument would run ``${system(...)}`` (tests/e2e shows it on the switch).
- lone surrogates (undecodable bytes) become U+FFFD.

Caller text never goes into application arguments: ``app_arg`` accepts only a small
whitelist, and numbers pass ``dial_digits`` / ``caller_number`` before reaching a dial string.
"""

from __future__ import annotations

import re
import unicodedata

import structlog

log = structlog.get_logger(__name__)

MAX_VALUE_BYTES = 4096
PAD_VARIABLE = "fsrouter_pad"

_VAR_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_LAYERS = {"{": (" ", ",", "="), "[": (" ", "|", ",", "\x02", "=")}
_CLOSERS = {"{": "}", "[": "]"}
_DIAL_STRING = re.compile(r"[A-Za-z0-9_./@:+=-]+\Z")
_APP_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_CONFIG_APP_ARGS = re.compile(r"[A-Za-z0-9 _./@:+=-]*\Z")
_APP_ARG = re.compile(r"[A-Za-z0-9_.+*#@-]{1,256}\Z")
_DIGITS = re.compile(r"\+?[0-9]{1,20}\Z")
_NUMBER_SEPARATORS = re.compile(r"[ ()./-]")
_ENTERPRISE = re.compile(r":_(?=:)")


class UnsafeText(ValueError):
    """Text that cannot be passed to the switch safely; the message says why."""


def originate_var(name: str, value: str, *, block: str = "{") -> str:
    """Return ``name=<escaped value>`` for an originate ``{...}`` (default) or ``[...]`` block.

    Join several results with ``,``. Example:
    ``originate_var("origination_caller_id_name", "Müller, Jörg")`` ->
    ``origination_caller_id_name=Müller\\\\\\,\\\\sJörg`` (exact on arrival).
    """
    if not _VAR_NAME.match(name):
        raise UnsafeText(f"variable name {name!r} must match ^[a-z_][a-z0-9_]*$")
    if block not in _LAYERS:
        raise ValueError(f"block must be '{{' or '[', not {block!r}")
    clean = _sanitize(name, value)
    if block == "[" and clean.count("'") % 2:
        clean = _replace_unmatched_openers(name, clean)
    if len(clean.encode("utf-8")) > MAX_VALUE_BYTES:
        raise UnsafeText(f"value of {name} is longer than {MAX_VALUE_BYTES} bytes")
    assignment = f"{name}={_escape_layers(clean, _LAYERS[block])}"
    before, after = _bracket_padding(clean, block, _CLOSERS[block])
    parts = ([f"{PAD_VARIABLE}={before}"] if before else []) + [assignment]
    return ",".join(parts + ([f"{PAD_VARIABLE}={after}"] if after else []))


def originate_command(vars: dict[str, str], dial_string: str, app: str, app_args: str) -> str:
    """Build ``originate {vars}<dial_string> '&app(app_args)'`` for ``api``/``bgapi``.

    ``vars`` may hold caller text (escaped here); the other three come from validated config
    and are only checked, never rewritten.
    """
    if not _DIAL_STRING.match(dial_string) or ":_:" in dial_string:
        raise UnsafeText(f"dial string {dial_string!r} has characters outside [A-Za-z0-9_./@:+=-]")
    if not _APP_NAME.match(app):
        raise UnsafeText(f"application name {app!r} must match ^[a-z_][a-z0-9_]*$")
    if not _CONFIG_APP_ARGS.match(app_args):
        raise UnsafeText(f"application arguments {app_args!r} have unsafe characters")
    block = ",".join(originate_var(key, val) for key, val in vars.items())
    prefix = f"{{{block}}}" if block else ""
    return f"originate {prefix}{dial_string} '&{app}({app_args})'"


def bridge_target(vars: dict[str, str], dial_string: str) -> str:
    """``{a=1,b=2}<dial string>`` for the ``bridge`` app, from configuration values only.

    ``bridge`` parses the block with fewer layers than ``api originate`` (no space split), so
    :func:`originate_var`'s escaping would not arrive exact here; instead every value must
    be inert as it is (``[A-Za-z0-9_.+*#@-]``). Caller text never goes this way: the switch
    copies the caller's ID to the bridged leg itself.
    """
    if not _DIAL_STRING.match(dial_string) or ":_:" in dial_string:
        raise UnsafeText(f"dial string {dial_string!r} has characters outside [A-Za-z0-9_./@:+=-]")
    parts = []
    for name, value in vars.items():
        if not _VAR_NAME.match(name):
            raise UnsafeText(f"variable name {name!r} must match ^[a-z_][a-z0-9_]*$")
        parts.append(f"{name}={app_arg(value)}")
    return (f"{{{','.join(parts)}}}" if parts else "") + dial_string


def app_arg(text: str) -> str:
    """Return ``text`` unchanged if it is inert in an application argument, else raise.

    Application arguments are expanded (``${...}``, ``%[...]``), split on spaces and
    quotes by many apps; only ``[A-Za-z0-9_.+*#@-]``, 1-256 characters, pass.
    """
    if not _APP_ARG.match(text):
        raise UnsafeText(f"{text!r} is not allowed in an application argument")
    return text


def dial_digits(text: str) -> str:
    """Return a number for a dial string: optional leading ``+`` and 1-20 digits, else raise."""
    if not _DIGITS.match(text):
        raise UnsafeText(f"{text!r} is not a dialable number (+ and 1-20 digits)")
    return text


def caller_number(text: str) -> str:
    """Return a caller's number with visual separators (space ( ) . / -) removed, or raise."""
    compact = _NUMBER_SEPARATORS.sub("", text)
    if not _DIGITS.match(compact):
        raise UnsafeText(f"{text!r} is not a caller number (+ and 1-20 digits)")
    return compact


def _sanitize(name: str, value: str) -> str:
    """Replace what no escaping can carry safely; log which kinds were replaced."""
    replaced = []
    text = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if text != value:
        replaced.append("invalid")
    chars = [" " if unicodedata.category(ch) == "Cc" else ch for ch in text]
    if "".join(chars) != text:
        replaced.append("control")
    text = "".join(chars)
    if "${" in text:
        replaced.append("dollar_brace")
        text = text.replace("${", "\uff04{")
    if replaced:
        log.warning("originate_value_replaced", variable=name, kinds=replaced)
    return text


def _escape_layers(text: str, layers: tuple[str, ...]) -> str:
    """Escape for each cleanup layer, innermost (last) first."""
    # An empty value would leave "name=" with one part, and FreeSWITCH skips the variable.
    out = _escape_one(text, layers[-1]) if text else "''"
    for depth in range(len(layers) - 2, -1, -1):
        if depth == 0:
            # Seen by strstr(":_:") after the first layer: break it with quotes that vanish.
            out = _ENTERPRISE.sub(":''_", out)
        if depth == 1 and len(layers) == 5 and out.endswith("\\"):
            # The [ ] comma pre-pass ignores a "," after "\\": end with an empty '' instead.
            out += "''"
        out = _escape_one(out, layers[depth])
    return out


def _replace_unmatched_openers(name: str, text: str) -> str:
    """Replace each ``[`` that no later ``]`` closes with U+FF3B (logged)."""
    open_at: list[int] = []
    for index, ch in enumerate(text):
        if ch == "[":
            open_at.append(index)
        elif ch == "]" and open_at:
            open_at.pop()
    if not open_at:
        return text
    log.warning("originate_value_replaced", variable=name, kinds=["unmatched_bracket"])
    chars = list(text)
    for index in open_at:
        chars[index] = "\uff3b"
    return "".join(chars)


def _escape_one(text: str, delim: str) -> str:
    """Escape for one ``cleanup_separated_string`` pass splitting on ``delim``."""
    lead = len(text) - len(text.lstrip(" "))
    trail = len(text.rstrip(" "))
    out = []
    for index, ch in enumerate(text):
        if ch == "\\" or ch == "'":
            out.append("\\" + ch)
        elif ch == " " and (delim == " " or index < lead or index >= trail):
            out.append("\\s")
        elif ch == delim and delim.isprintable():
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _bracket_padding(text: str, opener: str, closer: str) -> tuple[str, str]:
    """Return openers to put before and closers after so the block's brackets balance."""
    depth = lowest = 0
    for ch in text:
        depth += (ch == opener) - (ch == closer)
        lowest = min(lowest, depth)
    return opener * -lowest, closer * (depth - lowest)
