"""Results documents read back: text tables (report), comparisons (compare), pictures
(plot), what queueing theory predicts (predict) and a sweep's points summed up (sweeps).
Starts no run: of the engine it uses the results module (schemas, loader, writer) and the
seed's oops lines of workloads/shared_swapin.py."""
