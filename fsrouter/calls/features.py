"""Feature codes an agent dials from their own phone: log in, log out, record a greeting.

Who is calling is taken from ``variable_user_name``: FreeSWITCH sets it when a registered
phone authenticates (SIP digest against the directory), so a caller cannot claim it. The
caller ID number is NOT trusted for this (anyone can send any caller ID); the code is only
reachable from the agents' own dialplan context (freeswitch_conf/dialplan/fsrouter_features.xml).
A code from an unknown phone gets the refusal tone and changes nothing.
"""

from __future__ import annotations

from fsrouter.calls.call import IDENTITY_VARIABLES, Call
from fsrouter.calls.media import playable
from fsrouter.calls.voicemail import record_greeting
from fsrouter.prompts.catalog import feature_prompt
from fsrouter.store import StoreError
from fsrouter.store.audit import change_presence


def agent_of(call: Call) -> str | None:
    """The configured user whose extension the authenticated phone is, or None."""
    users = call.services.config.users
    for key in IDENTITY_VARIABLES:
        extension = call.channel.get(key, "")
        for user_id, user in users.items():
            if extension and user.extension == extension:
                return user_id
    return None


def run(call: Call, action: str) -> None:
    """Carry out ``action`` (``login``/``logout``/``record_greeting``) for the calling agent."""
    user_id = agent_of(call)
    if call.run("answer") is None:
        return
    done = False
    if user_id is None:
        call.log.warning("feature.unknown_phone", action=action,
                         user_name=call.channel.get("variable_user_name", "")[:40])
    else:
        call.log = call.log.bind(user=user_id)
        done = _carry_out(call, action, user_id)
    config = call.services.config
    call.run("playback", config.tone("confirm" if done else "refuse"))
    # Then in words, in the agent's language (rendered at start: fsrouter.prompts).
    language = config.users[user_id].language if user_id else config.defaults.language
    said = feature_prompt(config, action if done else "refused", language)
    call.run("playback", playable(said, config))
    call.hangup()


def _carry_out(call: Call, action: str, user_id: str) -> bool:
    now = call.services.now()
    try:
        # Audited as the agent's own change, in the same transaction.
        if action == "login":
            change_presence(user_id, "logged_in", f"phone:{user_id}", now)
        elif action == "logout":
            change_presence(user_id, "logged_out", f"phone:{user_id}", now)
        elif action == "record_greeting":
            return record_greeting(call, user_id)
        else:
            return False
    except StoreError as error:
        call.log.error("feature.store_unavailable", action=action, error=str(error))
        return False
    call.log.info("feature.done", action=action)
    return True
