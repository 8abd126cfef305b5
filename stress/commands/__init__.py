"""The commands beyond a single run: the sweeps (ramp, scale), the exact walk counts
(scan), the demo, the eras table and story, random torture runs and py-spy profiles.
Each runs through the engine and reports through the analysis; cli parses their options."""
