"""Measurements: benchmarks, device profiles, QoS planner, plots and reports (`hi-bench`)."""
