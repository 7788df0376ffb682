"""Notifications that must not get lost: voicemail by e-mail and webhooks to incident tools.

Both are outboxes in the database with a sender greenlet each; rows carry their own retry
state, so failures and restarts delay a notification but never drop it. Typical wiring::

    mailer = Mailer(config_source, host=socket.gethostname())
    webhooks = Webhooks(config_source)
    mailer.start(); webhooks.start()
    ...
    webhooks.emit("voicemail.left", {"voicemail_id": row.id, ...})
    mailer.kick()                       # a new voicemail row: send it now
    ...
    mailer.stop(); webhooks.stop()
"""

from fsrouter.notify.mail import Mailer, compose
from fsrouter.notify.webhooks import EVENTS, Webhooks

__all__ = ["EVENTS", "Mailer", "Webhooks", "compose"]
