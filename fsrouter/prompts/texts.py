"""The sentences fsrouter speaks when the configuration gives neither a file nor a text.

The menu's own sentences ("for X press N", invalid key, goodbye) live with the menu in
:mod:`fsrouter.routing.menu`; these are the others. Unknown languages use English.
"""

from __future__ import annotations

TEXTS = {
    "de": {
        "accept": "Anruf für {label}. Zum Annehmen drücken Sie die {digit}.",
        "out_of_hours": "Für {label} ist zurzeit niemand erreichbar. Auf Wiederhören.",
        "voicemail": "Ihr Gesprächspartner ist zurzeit nicht erreichbar. "
                     "Bitte hinterlassen Sie eine Nachricht nach dem Signalton.",
        "login": "Sie sind angemeldet.",
        "logout": "Sie sind abgemeldet.",
        "record_greeting": "Ihre Ansage ist gespeichert.",
        "refused": "Das hat nicht geklappt.",
    },
    "en": {
        "accept": "Call for {label}. Press {digit} to accept.",
        "out_of_hours": "Nobody is available for {label} at the moment. Goodbye.",
        "voicemail": "The person you are calling is not available. "
                     "Please leave a message after the tone.",
        "login": "You are logged in.",
        "logout": "You are logged out.",
        "record_greeting": "Your greeting has been saved.",
        "refused": "That did not work.",
    },
}
FEATURE_SENTENCES = ("login", "logout", "record_greeting", "refused")


def sentence(name: str, language: str, **values: object) -> str:
    """The sentence ``name`` in ``language`` (``de``, ``en-US``...), with ``values`` filled in."""
    base = language.split("-", 1)[0].lower()
    return TEXTS.get(base, TEXTS["en"])[name].format(**values)
