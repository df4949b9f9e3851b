"""What the benchmarks share: server processes, databases, statistics, CPU accounting,
the wrk driver, py-spy and SendGrid signatures.

Each module is one topic; the scripts in bench/ import what they measure with.
"""

from bench.harness.servers import BenchError, Server

__all__ = ["BenchError", "Server"]
