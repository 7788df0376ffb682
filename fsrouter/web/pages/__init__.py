"""The console's pages: one module per page, each exposing ``bp`` (listed in
:data:`fsrouter.web.app.PAGES`)."""
