"""Helpers for scripts/bench: processes (mosquitto, the athena simulator, the agent, an
MQTT echo), a lean MQTT recorder, /proc readings and percentiles.

Nothing here imports lobbypay: the agent is measured from the outside, as a process.
"""
