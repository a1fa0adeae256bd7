"""Router benchmarks: throughput against nginx, and tail latency with a slow replica."""
