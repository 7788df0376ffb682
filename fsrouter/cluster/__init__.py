"""Several daemons on one PostgreSQL: nodes with leases, and agent claims.

- :class:`Lease`: this daemon's row in ``cluster_nodes``, renewed by a heartbeat greenlet;
  a node that cannot renew it stops claiming (fails safe).
- :class:`Claims`: before an agent leg is originated the agent is claimed in
  ``agent_claims`` with one atomic statement; the claim is released when the attempt ends (or,
  for an answered leg, when the agent's leg ends), and is free once its node's lease expired.

SQLite works the same way for its one node. Design and reasons: docs/two-nodes.md.
"""

from fsrouter.cluster.claims import Claim, Claims
from fsrouter.cluster.lease import Lease, node_id

__all__ = ["Claim", "Claims", "Lease", "node_id"]
