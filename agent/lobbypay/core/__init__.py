"""The pure core: money, athena's balance rules, charge plans, the job state machine.

Nothing in this package does I/O, reads the clock or imports asyncio, sqlite3, httpx,
paho/aiomqtt, serial or evdev (tests/unit/test_core_purity.py checks it). Time is passed in.
"""
