"""Drain readiness: what would happen to each pod of a node if an event (a Spot eviction, by default)
arrived now, decided by the same drain plan as the handler's drain.

- ``assess``: the pure verdict for one node from its pods and the PodDisruptionBudgets;
- ``placement``: risks that need the rest of the cluster (replicas all on Spot, nowhere to go);
- ``cluster``: reading nodes, pods and budgets (list and get only);
- ``report``: the kubectl-style table and the JSON document;
- ``periodic``: the DaemonSet's optional periodic check of its own node, as metrics.

The ``readiness`` subcommand that prints them is :mod:`aksnth.commands.readiness`.
"""
