"""What every layer shares: the exception tree, Ray actor calls, wake-ups and bounded schema checks.

This package imports nothing from the rest of the project, so `sandbox`, `registry`, `agent_core` and
`toolserver` can all stand on it.
"""
