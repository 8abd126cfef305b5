"""One stress run: its parameters (config), the parent (runner) and its CPUs (worker, one
workload of workloads/ each), the recorded counters turned into figures (metrics) and into
a results document (results), the run on the terminal (ui), and signals between the runs
of a long command (stopping).  Imports nothing else of stress."""
