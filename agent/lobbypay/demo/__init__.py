"""``lobbypay demo``: the whole system on loopback, one process tree, nothing faked inside.

Parts, each its own process, all on 127.0.0.1:

* the athena simulator (``python -m lobbypay.sim.athena --port 0``);
* an MQTT broker: mosquitto on a free port with a temporary config;
* the real agent, ``lobbypay run --config <temporary config>``, with the ``sim`` reader
  (a Unix socket) and the ``console`` display (its output, with its logs, goes to
  ``agent.log`` in the work directory);
* in this process, a check-in app built on ``lobbypay.client``, plus a monitor that
  subscribes to the terminal's ``state`` and ``events`` topics and prints every screen
  and every event as a check-in app would see them.

A swipe is a real swipe into the agent: the test card's track text is written to the sim
reader's socket (``lobbypay_hw.reader_sim.send_swipe``), where the same framing and
parsing as a serial reader's run. The athena call is shown from the simulator's
``/_sim/calls`` record, in which track data exists only as a keyed digest and last 4.

Scripted (default): balance, charge (copay + a clean claim), swipe, events, the athena
call, the balance afterwards, the receipt emailed to the patient, and the front desk
voiding the payment on the staff topic (protocol 10); exits 0 when the charge succeeded
and both follow-ups were done. ``--interactive``: a
prompt (``help`` lists the commands). Ctrl-C or SIGTERM at any point stops every child
(agent first, so it can say ``online: false``) and removes the temporary directory; each
child also gets SIGTERM from the kernel if this process dies (PR_SET_PDEATHSIG).

The package: ``session`` (``run_demo``: start, run, stop), ``processes`` (the children and
the work directory), ``monitor`` (the terminal's screens and events as an app sees them),
``printer`` (all output), ``simulator`` (what the athena simulator recorded),
``script`` (the scripted walk-through) and ``interactive`` (the prompt). It imports
nothing from ``lobbypay.cli``: what both print comes from ``lobbypay.ui``, the test cards
from ``lobbypay.sim.cards``.
"""
