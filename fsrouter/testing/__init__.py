"""Test support shipped with fsrouter, importable by the project's tests and benchmarks.

``fsrouter.testing.realswitch`` runs a real FreeSWITCH configured from ``freeswitch_conf/``;
``fsrouter.testing.pytest_plugin`` offers it as pytest fixtures (``real_switch``, ``fresh_id``);
``fsrouter.testing.sipp`` drives SIPp as real SIP callers and registered phones against it;
``fsrouter.testing.audio`` finds prompts in what a caller heard (numpy, a test extra).
Nothing here is imported by the daemon itself.
"""
