"""The test harness: real servers, clients and readers that the suites and the benchmarks share."""
