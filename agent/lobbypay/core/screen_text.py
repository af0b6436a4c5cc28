"""Every text the lobby display shows, per language: the one catalogue (pure data).

``CATALOGUE[language][screen kind]`` holds ``short`` (the two lines of a 16x2 display)
and, where two more lines help the patient, ``tall`` (four lines for a 20x4 display).
``CATALOGUE[language]["labels"]`` holds the words ``lobbypay.core.screen`` puts into
lines it builds itself (the total, the amount paid, a card without a known brand).

Placeholders, filled by ``lobbypay.core.screen.render``:

* ``{total}``: the total due with the ``total`` label, fitted to the width ("Total $65.00",
  else "$65.00", else "65.00");
* ``{paid}``: the same with the ``paid`` label (empty when the total is not known);
* ``{amount}``: the total as "$65.00";
* ``{card}``: brand and last 4 ("Visa ****1111"; the ``card`` label when the brand is
  not known); empty before a card is read;
* ``{card_or_paid}``: ``{card}``, or ``{paid}`` when there is no card.

Rules for every text (``tests/unit/test_screen_text.py`` checks them for every language):
a ``short`` line has at most 16 characters, a ``tall`` line at most 20; a pending screen
shows the total; a character a character LCD cannot show either folds to a plain letter
(á -> a, ñ -> n, as the display drivers do) or is not used at all (no ¿ or ¡: they would
show as "?"). Texts keep the real letters; the drivers fold them for their hardware.

A third language is one more entry here (and nothing else): ``LANGUAGES`` is this
mapping's keys, and the config (``terminal.language``) and the protocol (``charge.start``
``language``) accept exactly those.

Spanish: short, polite, *usted* form, as a lobby sign would say it ("Pase su tarjeta",
"Pase a recepción"), written for patients from anywhere in the Spanish-speaking world
(neutral words: "tarjeta", "vencida", "recepción"). Word choices, read against what a
patient expects from a card terminal and a clinic lobby:

* "Pase su tarjeta" (swipe your card), the form card terminals in the Americas use;
  "Deslice su tarjeta" is 18 characters. A failed swipe says "Vuelva a pasarla" (swipe
  it again), not "Pase otra vez", which also reads as "come in again";
* "Pase a recepción" for "see the front desk" ("Diríjase a la recepción" does not fit 16);
* "Pago rechazado" rather than "Tarjeta rechazada" (17) for a decline, which also does
  not blame the card when athena refused the payment for another reason;
* "Tarjeta vencida" (expired), "Tiempo agotado" (time is up), "Un momento" (please wait)
  and "Bienvenidos" (plural: no guess at the patient's gender).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

Texts = Mapping[str, Mapping[str, tuple[str, ...]]]

_EN: dict[str, dict[str, tuple[str, ...]]] = {
    "labels": {"total": ("Total",), "paid": ("Paid",), "card": ("Card",)},
    "idle": {
        "short": ("Welcome", "Check in to pay"),
        "tall": ("Welcome", "", "Check in first,", "then pay here"),
    },
    "pending": {
        "short": ("{total}", "Please swipe"),
        "tall": ("Total due", "{amount}", "", "Please swipe card"),
    },
    "swipe_again": {
        "short": ("{total}", "Swipe again"),
        "tall": ("Total due", "{amount}", "Card not read", "Please swipe again"),
    },
    "not_a_bank_card": {
        "short": ("{total}", "Use a bank card"),
        "tall": ("Total due", "{amount}", "Not a bank card", "Use a bank card"),
    },
    "card_expired": {
        "short": ("{total}", "Card expired"),
        "tall": ("Total due", "{amount}", "Card expired", "Use another card"),
    },
    "processing": {
        "short": ("Processing...", "{card}"),
        "tall": ("Processing...", "{card}", "", "Please wait"),
    },
    "approved": {
        "short": ("Approved", "{card_or_paid}"),
        "tall": ("Approved", "{paid}", "{card}", "Thank you"),
    },
    "declined": {
        "short": ("Card declined", "See front desk"),
        "tall": ("Card declined", "{card}", "Please see", "the front desk"),
    },
    "failed": {"short": ("Payment failed", "See front desk")},
    "canceled": {"short": ("Payment canceled", "See front desk")},
    "expired": {"short": ("Time is up", "See front desk")},
    "unknown": {
        "short": ("Please wait", "See front desk"),
        "tall": ("Please wait", "Checking payment", "Please see", "the front desk"),
    },
    # an encrypting/masking reader: no card can be read here, so no other card helps
    "cannot_read_here": {
        "short": ("{total}", "Pay at the desk"),
        "tall": ("Total due", "{amount}", "Card can't be read", "Pay at front desk"),
    },
}

_ES: dict[str, dict[str, tuple[str, ...]]] = {
    "labels": {"total": ("Total",), "paid": ("Pagado",), "card": ("Tarjeta",)},
    "idle": {
        "short": ("Bienvenidos", "Regístrese antes"),
        "tall": ("Bienvenidos", "", "Regístrese y", "luego pague aquí"),
    },
    "pending": {
        "short": ("{total}", "Pase su tarjeta"),
        "tall": ("Total a pagar", "{amount}", "", "Pase su tarjeta"),
    },
    "swipe_again": {
        "short": ("{total}", "Vuelva a pasarla"),
        "tall": ("Total a pagar", "{amount}", "No se pudo leer", "Vuelva a pasarla"),
    },
    "not_a_bank_card": {
        "short": ("{total}", "Use otra tarjeta"),
        "tall": ("Total a pagar", "{amount}", "No es bancaria", "Use otra tarjeta"),
    },
    "card_expired": {
        "short": ("{total}", "Tarjeta vencida"),
        "tall": ("Total a pagar", "{amount}", "Tarjeta vencida", "Use otra tarjeta"),
    },
    "processing": {
        "short": ("Procesando...", "{card}"),
        "tall": ("Procesando...", "{card}", "", "Espere por favor"),
    },
    "approved": {
        "short": ("Aprobado", "{card_or_paid}"),
        "tall": ("Aprobado", "{paid}", "{card}", "Gracias"),
    },
    "declined": {
        "short": ("Pago rechazado", "Pase a recepción"),
        "tall": ("Pago rechazado", "{card}", "Por favor, pase", "a la recepción"),
    },
    "failed": {"short": ("No se pudo pagar", "Pase a recepción")},
    "canceled": {"short": ("Pago cancelado", "Pase a recepción")},
    "expired": {"short": ("Tiempo agotado", "Pase a recepción")},
    "unknown": {
        "short": ("Un momento", "Pase a recepción"),
        "tall": ("Un momento", "Verificando pago", "Por favor, pase", "a la recepción"),
    },
    "cannot_read_here": {
        "short": ("{total}", "Pase a recepción"),
        "tall": ("Total a pagar", "{amount}", "No se puede leer", "Pague en recepción"),
    },
}

#: language code (ISO 639-1) -> screen kind (or "labels") -> lines
CATALOGUE: Mapping[str, Texts] = MappingProxyType({
    "en": MappingProxyType(_EN),
    "es": MappingProxyType(_ES),
})
LANGUAGES: tuple[str, ...] = tuple(CATALOGUE)
DEFAULT_LANGUAGE = "en"
SHORT_MAX_COLS = 16
TALL_MAX_COLS = 20
