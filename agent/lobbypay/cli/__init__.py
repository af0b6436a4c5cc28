"""The ``lobbypay`` command line: the agent itself, and the maintainers' tools.

``lobbypay run`` is the agent (protocol.md section 9). Everything else is for people and
scripts looking after terminals; each is described in docs/OPERATIONS.md:

==============  =========================================================================
run             run the agent in the foreground until SIGTERM
check-config    validate a config file and read its secret files
doctor          check config, reader, display, broker, athena, clock and state_dir;
                ``--swipe`` then waits for one swipe (brand, last 4, tracks read)
jobs            recent jobs from this terminal's journal (read-only)
status          this terminal's retained ``status`` and ``state``
fleet           every terminal on a broker, from the retained topics
balance         ``balance.get`` through the terminal
charge          ``charge.start`` through the terminal; ``--wait`` prints events to the end
void            ``charge.void`` on the staff topic (a front-desk login)
receipt         ``receipt.email``: athena emails a succeeded job's receipt
swipe           a test card into a ``sim`` reader's socket (no hardware needed)
devices         readers and displays plugged in, with the config lines for each
demo            the whole system on loopback, scripted or ``--interactive``
==============  =========================================================================

Connection options (``--host``, ``--port``, ``--terminal``, ...) default from ``--config``
(default /etc/lobbypay/lobbypay.toml), so on a terminal ``lobbypay status`` is enough.
``--json`` prints machine-readable output instead of tables.

Exit codes scripts can rely on:

====  =====================================================================
0     success (``run``: stopped cleanly by SIGTERM/SIGINT)
1     the check or command failed (``doctor`` found a problem, a charge failed,
      the agent answered ``ok: false``, the terminal is offline)
2     invalid configuration or usage (the message names the key)
3     could not reach the broker / terminal (no reply in time)
====  =====================================================================

The package, one module per group of commands (``parser`` imports each only when its
command runs):

==============  =========================================================================
parser          the arguments of every subcommand, ``main`` and the table of commands
configfile      the default config path; loading it with a message that says what to do
connection      broker and terminal from the options or the config; TLS
agent           ``run``, ``check-config``
doctor          ``doctor`` and its checks
jobs            ``jobs``, ``jobs --unsettled`` (the journal's read-only functions)
status          ``status``, ``fleet`` (retained topics only)
remote          ``balance``, ``charge``, ``void``, ``receipt`` (commands to the terminal)
simulated       ``swipe`` (a test card, ``lobbypay.sim.cards``), ``demo``
==============  =========================================================================

``devices`` is ``lobbypay.devices``; what the commands print (exit codes, colours,
tables) is ``lobbypay.ui``, shared with the demo.
"""

from lobbypay.cli.parser import main

__all__ = ["main"]
