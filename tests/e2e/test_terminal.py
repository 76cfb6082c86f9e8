"""Whatever users send is printed as it is: arbitrary strings through every text view are found
verbatim (unprintable characters as escapes), never read as markup, never crash a view."""

from __future__ import annotations

import string

import orjson
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.identity import Guards
from engine.limits import id_problem
from engine.terminal import shown

from ..helpers import day, order, tp

# Markup, emoji codes and escapes first, then anything at all.
TRICKY = st.sampled_from(
    [
        "[/]",
        "[bold]",
        "[/bold] oops",
        ":smile:",
        "[red]x[/red]",
        "\\",
        "[",
        "]",
        "%s",
        "{}",
        "\x1b[31m",
        "\n",
        "\r",
        "\t",
        "\u202e",
        "\u0000",
        "'",
        '"',
        "\u00a0",
        "é",
        "日本",
    ]
)
TEXT = st.lists(st.one_of(TRICKY, st.text(min_size=1, max_size=6)), min_size=1, max_size=5).map("".join)
VALUES = TEXT.filter(lambda s: "\x00" not in s)  # NUL is refused in any value (engine.limits)
# Ids are printable (engine.limits): markup and any printable text.
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
IDS = (
    st.lists(
        st.one_of(
            st.sampled_from(["[/]", "[bold]", "[/bold] oops", ":smile:", "[red]x", "\\", "'", "日本"]),
            st.text(PRINTABLE, min_size=1, max_size=6),
        ),
        min_size=1,
        max_size=4,
    )
    .map("".join)
    # valid ids, and not a placeholder such as "0" (refused as a customer id: engine.identity.guards)
    .filter(lambda s: id_problem(s) is None and "@" not in s and Guards().refusal(s) is None)
)


def test_shown_keeps_printable_text_and_escapes_the_rest():
    assert shown("x-[/]-y :smile:") == "x-[/]-y :smile:"
    assert shown("a\x1b[31mb\nc\u202e") == "a\\x1b[31mb\\nc\\u202e"
    assert all(c.isprintable() for c in shown(string.printable + "\x00\x7f\u2028"))


def invoke(env: dict, *args: str):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False, terminal_width=400)
    assert result.exit_code == 0, result.output
    return result.output


counter = iter(range(10**9))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customer=IDS, event=IDS, source=IDS, value=VALUES)
def test_every_text_view_prints_user_strings_verbatim(tmp_path_factory, customer, event, source, value):
    env = {"JOURNEY_DATA_DIR": str(tmp_path_factory.mktemp("var")), "COLUMNS": "400"}
    n = next(counter)
    path = tmp_path_factory.mktemp("in") / "in.jsonl"
    first = {
        **tp(event, "customer.registered", day(0), customer=customer, traits={"tier": value, "timezone": "UTC"}),
        "source": source,
    }
    second = order(f"{event}-o{n}", day(1), customer=customer, note=value)
    bad = {**tp(f"bad-{n}", value, day(2), customer=customer)}  # the value as a kind: rejected
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in (first, second, bad)) + b"\n")

    out = invoke(env, "ingest", str(path))
    assert shown(repr(value)) in out  # "unknown kind '...'", escaped as written
    # (`--` and `--customer=`: an id may start with a dash)
    for args in (
        ["customer", "--", customer],
        ["changes", f"--customer={customer}"],
        ["actions", f"--customer={customer}"],
    ):
        out = invoke(env, *args)
        assert shown(customer) in out, (args, out)
        assert not any(c in out for c in "\x1b\r\u202e\x00")
    view = invoke(env, "customer", "--limit", "5", "--", customer)
    assert shown(event) in view and f"tier={shown(value)}" in view
    action = orjson.loads(invoke(env, "actions", f"--customer={customer}", "--json").splitlines()[0])["action_id"]
    assert shown(customer) in invoke(env, "why", action)
