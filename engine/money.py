"""Money as touchpoints carry it: an amount and an ISO 4217 currency code.

The codes are ISO 4217's current list (as published in 2025; withdrawn codes such as HRK,
SLL, ANG or ZWL are refused), without XTS (reserved for testing) and XXX (no currency): an
order paid in "no currency" has no revenue anyone could add up. No imports from the rest of
the engine, so anything may use it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

CURRENCIES = frozenset(
    """
AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD
XPF XPT XSU XUA YER ZAR ZMW ZWG
""".split()
)


# Digits after the decimal point (ISO 4217's minor unit) where they are not 2: revenue is rounded
# and shown to them (a yen has no cents, a Bahraini dinar has fils).
MINOR_UNITS = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}


def minor_digits(code: str) -> int:
    return MINOR_UNITS.get(code, 2)


def currency_problem(code: str) -> str | None:
    """Why a string is not a currency code, or None if it is one."""
    if code in CURRENCIES:
        return None
    if code == "XTS":
        return "'XTS' is ISO 4217's code reserved for testing, not a currency anything is paid in"
    if code == "XXX":
        return "'XXX' is ISO 4217's code for no currency: an amount needs one"
    if code.upper() in CURRENCIES:
        return f"{code!r} is not a currency code: ISO 4217 codes are capitals ({code.upper()!r})"
    return f"{code!r} is not an ISO 4217 currency code (e.g. EUR, USD, GBP, JPY)"


def _currency(code: str) -> str:
    problem = currency_problem(code)
    if problem:
        raise ValueError(problem)
    return code


Currency = Annotated[str, AfterValidator(_currency)]
