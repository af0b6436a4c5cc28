"""Display texts (lobbypay.core.screen): fit 2x16, read on 4x20, carry the total while
pending, never more of the card than brand and last 4."""

from __future__ import annotations

import unicodedata

import pytest
from lobbypay.core.money import Cents
from lobbypay.core.screen import Screen, ScreenKind, brand_label, render
from lobbypay.core.screen_text import CATALOGUE, LANGUAGES, SHORT_MAX_COLS, TALL_MAX_COLS
from lobbypay_hw.api import ScreenView
from lobbypay_hw.screen import to_lcd_text

PENDING_KINDS = [ScreenKind.PENDING, ScreenKind.SWIPE_AGAIN, ScreenKind.NOT_A_BANK_CARD,
                 ScreenKind.CARD_EXPIRED, ScreenKind.CANNOT_READ_HERE]


def sample(kind: ScreenKind, total: int = 6500) -> Screen:
    return Screen(kind, total=Cents(total), brand="visa", last4="1111")


SIZES = [(16, 2), (20, 2), (20, 4), (40, 4)]


@pytest.mark.parametrize("kind", list(ScreenKind), ids=str)
@pytest.mark.parametrize("cols,rows", SIZES)
@pytest.mark.parametrize("total", [6500, 500000, 999999999])
def test_every_screen_fits(kind: ScreenKind, cols: int, rows: int, total: int) -> None:
    lines = render(sample(kind, total), cols, rows)
    assert 1 <= len(lines) <= rows
    assert all(len(line) <= cols for line in lines), lines
    assert lines[0].strip(), "first line is never blank"
    ScreenView(lines)  # the driver-side guard accepts it (no PAN-like runs)


@pytest.mark.parametrize("kind", PENDING_KINDS, ids=str)
@pytest.mark.parametrize("cols,rows", SIZES)
def test_pending_screens_show_the_total(kind: ScreenKind, cols: int, rows: int) -> None:
    text = "\n".join(render(sample(kind), cols, rows))
    assert "65.00" in text
    # protocol 8's example form, also for large amounts (no thousands separator)
    text = "\n".join(render(sample(kind, 500000), cols, rows))
    assert "5000.00" in text


def test_pending_golden_2x16() -> None:
    assert render(sample(ScreenKind.PENDING), 16, 2) == ("Total $65.00", "Please swipe")
    assert render(sample(ScreenKind.PENDING, 500000), 16, 2) == ("Total $5000.00", "Please swipe")
    # too wide for "Total $": the amount alone still shows
    assert render(sample(ScreenKind.PENDING, 999999999), 16, 2)[0] == "$9999999.99"


def test_pending_golden_4x20() -> None:
    assert render(sample(ScreenKind.PENDING), 20, 4) == (
        "Total due", "$65.00", "", "Please swipe card")


def test_swipe_again_and_expired_card_say_so() -> None:
    assert render(sample(ScreenKind.SWIPE_AGAIN), 16, 2)[1] == "Swipe again"
    assert render(sample(ScreenKind.CARD_EXPIRED), 16, 2)[1] == "Card expired"
    assert "Use another card" in render(sample(ScreenKind.CARD_EXPIRED), 20, 4)
    assert render(sample(ScreenKind.NOT_A_BANK_CARD), 16, 2)[1] == "Use a bank card"


def test_processing_and_approved_show_brand_and_last4_only() -> None:
    assert render(sample(ScreenKind.PROCESSING), 16, 2) == ("Processing...", "Visa ****1111")
    assert render(sample(ScreenKind.APPROVED), 16, 2) == ("Approved", "Visa ****1111")
    tall = render(sample(ScreenKind.APPROVED), 20, 4)
    assert tall == ("Approved", "Paid $65.00", "Visa ****1111", "Thank you")


def test_long_brand_names_shrink_to_fit() -> None:
    s = Screen(ScreenKind.PROCESSING, brand="mastercard", last4="4444")
    assert render(s, 16, 2)[1] == "Mastercard *4444"
    s = Screen(ScreenKind.PROCESSING, brand="some-new-network-brand", last4="4444")
    line = render(s, 16, 2)[1]
    assert line.endswith("4444") and len(line) <= 16


@pytest.mark.parametrize("kind,first", [
    (ScreenKind.IDLE, "Welcome"),
    (ScreenKind.DECLINED, "Card declined"),
    (ScreenKind.FAILED, "Payment failed"),
    (ScreenKind.CANCELED, "Payment canceled"),
    (ScreenKind.EXPIRED, "Time is up"),
    (ScreenKind.UNKNOWN, "Please wait"),
])
def test_result_screens(kind: ScreenKind, first: str) -> None:
    lines = render(Screen(kind), 16, 2)
    assert lines[0] == first
    if kind is not ScreenKind.IDLE:
        assert lines[1] == "See front desk"


def test_result_screens_carry_no_amount_or_card_unless_asked() -> None:
    for kind in (ScreenKind.FAILED, ScreenKind.CANCELED, ScreenKind.EXPIRED, ScreenKind.UNKNOWN):
        text = "".join(render(Screen(kind), 20, 4))
        assert "1111" not in text and "$" not in text


def test_brand_labels() -> None:
    assert brand_label("visa") == "Visa"
    assert brand_label("AMEX") == "Amex"
    assert brand_label(None) == "Card"
    assert brand_label("\x1b[2J") == "2J"  # control characters never reach the LCD


@pytest.mark.parametrize("last4", ["111", "41111111", "x111"])
def test_screen_refuses_more_than_last4(last4: str) -> None:
    with pytest.raises(ValueError):
        Screen(ScreenKind.PROCESSING, brand="visa", last4=last4)


def test_pending_without_total_is_refused() -> None:
    with pytest.raises(ValueError):
        Screen(ScreenKind.PENDING)


def test_too_small_display_refused() -> None:
    with pytest.raises(ValueError):
        render(Screen(ScreenKind.IDLE), 8, 1)


def test_cannot_read_here_sends_to_the_front_desk() -> None:
    # the job stays pending, so the total stays on the screen (protocol 8); any other card
    # would fail the same way on this reader, so the patient is sent to pay at the desk
    assert render(sample(ScreenKind.CANNOT_READ_HERE), 16, 2) == ("Total $65.00",
                                                                   "Pay at the desk")
    assert render(sample(ScreenKind.CANNOT_READ_HERE), 20, 4) == (
        "Total due", "$65.00", "Card can't be read", "Pay at front desk")
    es = Screen(ScreenKind.CANNOT_READ_HERE, total=Cents(6500), language="es")
    assert render(es) == ("Total $65.00", "Pase a recepción")


# ---------------------------------------------------------------- every language (protocol 10)

#: every screen a job shows (issue 12's list) plus idle and the reconciling screen
JOB_SCREENS = [k.value for k in ScreenKind]
PLACEHOLDERS = {"{total}", "{paid}", "{amount}", "{card}", "{card_or_paid}"}


def test_languages_are_english_and_spanish_and_complete() -> None:
    assert LANGUAGES[:2] == ("en", "es")
    for lang, texts in CATALOGUE.items():
        assert set(texts) == set(JOB_SCREENS) | {"labels"}, lang
        assert set(texts["labels"]) == {"total", "paid", "card"}, lang
        for kind in JOB_SCREENS:
            entry = texts[kind]
            assert set(entry) <= {"short", "tall"} and len(entry["short"]) == 2, (lang, kind)
            assert len(entry.get("tall", ("",) * 4)) == 4, (lang, kind)
            # the same facts in every language: a screen that shows the total or the card
            # in English shows it in every other language too
            for form in ("short", "tall"):
                en = set(CATALOGUE["en"][kind].get(form, ()))
                other = set(entry.get(form, ()))
                assert en & PLACEHOLDERS == other & PLACEHOLDERS, (lang, kind, form)


def _raw_lines() -> list[tuple[str, str, str, int]]:
    out = []
    for lang, texts in CATALOGUE.items():
        for kind, entry in texts.items():
            for form, lines in entry.items():
                limit = TALL_MAX_COLS if form == "tall" else SHORT_MAX_COLS
                out.extend((lang, f"{kind}.{form}", line, limit) for line in lines)
    return out


@pytest.mark.parametrize(("lang", "where", "line", "limit"), _raw_lines())
def test_every_text_fits_and_folds_to_plain_letters(lang: str, where: str, line: str,
                                                    limit: int) -> None:
    if line in PLACEHOLDERS:
        return
    assert "{" not in line and "}" not in line, "unknown placeholder"
    assert len(line) <= limit, (lang, where, line)
    # a character LCD shows ASCII: every letter folds to a plain one, nothing becomes "?"
    assert "?" not in to_lcd_text(line), (lang, where, line)
    for ch in line:
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        assert base and base.isprintable(), (lang, where, ch)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", list(ScreenKind), ids=str)
@pytest.mark.parametrize("cols,rows", [(16, 2), (20, 4)])
@pytest.mark.parametrize("total", [6500, 500000, 999999999])
@pytest.mark.parametrize("brand", ["visa", None, "mastercard"])
def test_every_screen_of_every_language_fits(lang: str, kind: ScreenKind, cols: int, rows: int,
                                             total: int, brand: str | None) -> None:
    screen = Screen(kind, total=Cents(total), brand=brand, last4="1111", language=lang)
    lines = render(screen, cols, rows)
    assert 1 <= len(lines) <= rows
    assert all(len(line) <= cols for line in lines), lines
    assert lines[0].strip()
    if kind in PENDING_KINDS:
        assert format_cents_text(total) in "\n".join(lines)
    ScreenView(lines)


def format_cents_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def test_spanish_golden_2x16_and_4x20() -> None:
    es = {k: Screen(k, total=Cents(6500), brand="visa", last4="1111", language="es")
          for k in ScreenKind}
    assert render(es[ScreenKind.PENDING]) == ("Total $65.00", "Pase su tarjeta")
    assert render(es[ScreenKind.SWIPE_AGAIN]) == ("Total $65.00", "Vuelva a pasarla")
    assert render(es[ScreenKind.CARD_EXPIRED]) == ("Total $65.00", "Tarjeta vencida")
    assert render(es[ScreenKind.PROCESSING]) == ("Procesando...", "Visa ****1111")
    assert render(es[ScreenKind.APPROVED]) == ("Aprobado", "Visa ****1111")
    assert render(es[ScreenKind.DECLINED]) == ("Pago rechazado", "Pase a recepción")
    assert render(es[ScreenKind.EXPIRED]) == ("Tiempo agotado", "Pase a recepción")
    assert render(es[ScreenKind.CANCELED]) == ("Pago cancelado", "Pase a recepción")
    assert render(es[ScreenKind.FAILED]) == ("No se pudo pagar", "Pase a recepción")
    assert render(es[ScreenKind.PENDING], 20, 4) == (
        "Total a pagar", "$65.00", "", "Pase su tarjeta")
    assert render(es[ScreenKind.APPROVED], 20, 4) == (
        "Aprobado", "Pagado $65.00", "Visa ****1111", "Gracias")
    unbranded = Screen(ScreenKind.PROCESSING, last4="1111", language="es")
    assert render(unbranded) == ("Procesando...", "Tarjeta ****1111")
    # what a character LCD shows of it: the plain letters
    assert to_lcd_text("Pase a recepción") == "Pase a recepcion"


def test_no_language_means_english_and_an_unknown_one_is_refused() -> None:
    assert render(Screen(ScreenKind.IDLE)) == ("Welcome", "Check in to pay")
    with pytest.raises(ValueError):
        Screen(ScreenKind.IDLE, language="fr")
