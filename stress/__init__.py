"""The stress tool: the engine that runs the model on CPU processes, the analysis of the
documents it writes, the commands built on both, and the command line over them all.  Each
imports only what is listed before it: engine, analysis, commands, cli."""
