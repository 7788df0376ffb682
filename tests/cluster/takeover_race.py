"""Run as a process: greenlets, each its own live node, take over the same dead node's calls
at the same instant.

    python takeover_race.py URL START_AT NODES TAG

Prints what each node took as JSON: {"tag-3": ["call-1", ...], ...}.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import structlog  # noqa: E402

from fsrouter.cluster import sql  # noqa: E402
from fsrouter.store.db import open_database  # noqa: E402


def main() -> None:
    url, start_at, nodes, tag = sys.argv[1:5]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    open_database(url, pool_size=int(nodes) + 5)
    taken: dict[str, list[str]] = {}

    def node(i: int) -> None:
        name = f"{tag}-{i}"
        sql.register_node(name, "racer", i, 120.0)
        gevent.sleep(max(0.0, float(start_at) - time.time()))
        taken[name] = [uuid for uuid, _ in sql.take_over_calls(name)]

    gevent.joinall([gevent.spawn(node, i) for i in range(int(nodes))], raise_error=True)
    print(json.dumps(taken))


if __name__ == "__main__":
    main()
