"""The test kit: what the tests, the demo and the benchmarks build on.

A real control plane (``controlplane``), AKS-like nodes, pods and ServiceAccounts (``cluster``), a
kubelet stand-in (``kubelet``), real nodes (``realcluster``, ``scenario``), the handler as a process
(``process``), receivers and a forward proxy (``receivers``), the API server's audit log (``audit``)
and the safety record of a drain (``safety``). It imports nothing of ``tests``, ``bench`` or ``demo``
(an import-linter contract in pyproject.toml keeps it so).
"""
