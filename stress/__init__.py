"""The engine: CPU worker processes, workloads, measurement and the command line."""
