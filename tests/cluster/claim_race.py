"""Run as a process: greenlets, each its own node, claim the same agents at the same instants.

    python claim_race.py URL START_AT ROUNDS NODES TAG SLOT

Round r fires at START_AT + r * SLOT (wall clock, shared by every process): every node claims
``agent-r`` (free) and then ``dead-r`` (held by a node whose lease ended). Prints the wins as
JSON: {"agent-0": ["tag-3"], ...}.
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
    url, start_at, rounds, nodes, tag, slot = sys.argv[1:7]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    open_database(url, pool_size=int(nodes) + 5)
    wins: dict[str, list[str]] = {}

    def node(i: int) -> None:
        name = f"{tag}-{i}"
        sql.register_node(name, "racer", i, 120.0)
        for r in range(int(rounds)):
            gevent.sleep(max(0.0, float(start_at) + r * float(slot) - time.time()))
            for agent in (f"agent-{r}", f"dead-{r}"):
                if sql.try_claim(agent, name, f"call-{name}", f"leg-{name}-{r}"):
                    wins.setdefault(agent, []).append(name)

    gevent.joinall([gevent.spawn(node, i) for i in range(int(nodes))], raise_error=True)
    print(json.dumps(wins))


if __name__ == "__main__":
    main()
