"""Simulators of lobbypay's peers, for tests and the demo (loopback only).

``lobbypay.sim.athena.AthenaSim`` is athena's REST API; run it standalone with
``python -m lobbypay.sim.athena --port 0``. Import the module itself: this package does
not import it eagerly, so ``python -m`` runs it cleanly.
"""
