"""The deterministic fault-injection simulator (see docs/simulation.md)."""
