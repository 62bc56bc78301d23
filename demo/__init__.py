"""`make demo`: the handler draining a simulated Spot node on a laptop (see docs/demo.md).

A development tool beside `bench/`, not part of the product: it builds on the test kit
(`testkit`), and is run from the repository root as `python -m demo`.
"""
