"""The console (issue 20): ``fsrouter web``, a separate process serving pages and a JSON API
over the same store the daemon uses. A bug here can never drop a call: the daemon does not
import this package.

Framework: Flask on gevent's WSGI server (see docs/console.md for why);
:mod:`fsrouter.web.app` builds the application, :mod:`fsrouter.web.auth` decides who may do
what, pages are blueprints under :mod:`fsrouter.web.pages`.
"""
