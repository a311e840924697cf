"""Alertmanager matchers as Fleet Management uses them (research/fleet-management.md §3.2)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from otelcockpit.fleet.matchers import (
    MAX_MATCHER_LENGTH,
    Matcher,
    MatcherError,
    compile_matchers,
    keys_of,
    matches,
    matches_getter,
    parse_matcher,
    parse_matchers,
)

PROD = {"env": "prod", "region": "eu-west-1", "team": "payments", "collector.os": "linux"}


def m(text: str) -> Matcher:
    return parse_matcher(text)


# --- operators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "attrs", "expected"),
    [
        ('env="prod"', PROD, True),
        ('env="staging"', PROD, False),
        ('env!="prod"', PROD, False),
        ('env!="staging"', PROD, True),
        ('env=~"pr.*"', PROD, True),
        ('env=~"stag.*"', PROD, False),
        ('env!~"pr.*"', PROD, False),
        ('env!~"stag.*"', PROD, True),
        ('region=~"eu-.*|us-.*"', PROD, True),
        ('region=~"ap-.*"', PROD, False),
    ],
)
def test_each_operator(text: str, attrs: dict[str, str], expected: bool) -> None:
    assert m(text).matches(attrs) is expected


def test_operator_is_parsed_exactly() -> None:
    assert [(x.name, x.op, x.value) for x in parse_matchers("a=1,b!=2,c=~3,d!~4")] == [
        ("a", "=", "1"),
        ("b", "!=", "2"),
        ("c", "=~", "3"),
        ("d", "!~", "4"),
    ]


# --- quoting and escapes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ("collector.os=linux", "collector.os", "=", "linux"),
        ('collector.os="linux"', "collector.os", "=", "linux"),
        ('collector.os=~".*"', "collector.os", "=~", ".*"),
        ('env="PROD"', "env", "=", "PROD"),
        ("  env  =  prod  ", "env", "=", "prod"),
        ('"host name"="a b"', "host name", "=", "a b"),
        ('msg="say \\"hi\\""', "msg", "=", 'say "hi"'),
        ('path="C:\\\\temp"', "path", "=", "C:\\temp"),
        ('text="line1\\nline2"', "text", "=", "line1\nline2"),
        ('v="a,b{c}=d~e!f\'g"', "v", "=", "a,b{c}=d~e!f'g"),
        ("emoji=🚀", "emoji", "=", "🚀"),
        ("région=Zürich", "région", "=", "Zürich"),
        ("env=", "env", "=", ""),
        ('env=""', "env", "=", ""),
        ("a=b,c", "a", "=", "b,c"),  # one stored matcher: a comma is an ordinary character
    ],
)
def test_quoted_and_unquoted(text: str, name: str, op: str, value: str) -> None:
    parsed = parse_matcher(text)
    assert (parsed.name, parsed.op, parsed.value) == (name, op, value)


def test_quoted_and_unquoted_are_the_same_matcher() -> None:
    assert parse_matcher("collector.os=linux") == parse_matcher('collector.os="linux"')
    assert parse_matcher('"env"=prod') == parse_matcher('env="prod"')


@pytest.mark.parametrize(
    ("quoted", "value"),
    [
        ('"tab\\there"', "tab\there"),
        ('"\\a\\b\\f\\r\\v"', "\a\b\f\r\v"),
        ('"\\x41\\101\\u00e9\\U0001F680"', "AAé🚀"),
        ('"raw\ttab"', "raw\ttab"),
    ],
)
def test_go_escapes_in_quoted_strings(quoted: str, value: str) -> None:
    # Alertmanager reads quoted strings with Go's strconv.Unquote.
    assert parse_matcher(f"k={quoted}").value == value
    assert parse_matcher(str(parse_matcher(f"k={quoted}"))).value == value


def test_quoted_value_keeps_escaped_regex() -> None:
    # \\. in the quoted string is a backslash then a dot: a literal dot in the regex.
    dotted = parse_matcher('host=~"web\\\\.example"')
    assert dotted.value == "web\\.example"
    assert dotted.matches({"host": "web.example"})
    assert not dotted.matches({"host": "webxexample"})


# --- fully anchored regular expressions ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ('env=~"prod"', "prod", True),
        ('env=~"prod"', "production", False),
        ('env=~"prod"', "preprod", False),
        ('env=~"prod"', "prod\n", False),
        ('env=~"prod.*"', "production", True),
        ('env=~"a|b"', "ab", False),  # the alternation is anchored as a whole: ^(?:a|b)$
        ('env=~"a|b"', "b", True),
        ('env!~"prod"', "production", True),
        ('env=~".*"', "", True),
        ('env=~".+"', "", False),
        ('env=~"."', "\n", False),  # like Alertmanager's ^(?:re)$: '.' does not match a newline
    ],
)
def test_regex_is_fully_anchored(text: str, value: str, expected: bool) -> None:
    assert m(text).matches({"env": value}) is expected


@pytest.mark.parametrize(
    "text",
    [
        'a=~"(x)\\\\1"',  # back-reference
        'a=~"(?P<n>x)(?P=n)"',
        'a=~"(?=x)x"',  # look-ahead
        'a=~"(?<!x)y"',  # look-behind
        'a=~"x*+"',  # possessive
        'a=~"(?>x)"',  # atomic
        'a=~"(x)?(?(1)y|z)"',  # conditional
    ],
)
def test_regex_outside_re2_is_refused(text: str) -> None:
    with pytest.raises(MatcherError, match="RE2") as exc:
        parse_matcher(text)
    assert exc.value.position == 3  # column 4: where the value starts


def test_bad_regex_names_the_value_column() -> None:
    with pytest.raises(MatcherError) as exc:
        parse_matchers('env="prod",team=~ "pay(")')
    assert exc.value.position == len('env="prod",team=~ ')
    assert "column 19" in str(exc.value)
    assert "bad regex" in str(exc.value)


@pytest.mark.parametrize("value", ["x{99999999999}", "(" * 99 + ")" * 99, "\\\\"])
def test_pathological_regexes_end_as_matcher_errors(value: str) -> None:
    with pytest.raises(MatcherError):
        parse_matcher(f'a=~"{value}"')


# --- missing attributes are the empty string -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('foo!="x"', True),
        ('foo=""', True),
        ("foo=", True),
        ('foo="x"', False),
        ('foo=~""', True),
        ('foo=~".*"', True),
        ('foo=~".+"', False),
        ('foo!~".+"', True),
        ('foo!=""', False),
    ],
)
def test_missing_attribute_is_empty_string(text: str, expected: bool) -> None:
    assert m(text).matches({"env": "prod"}) is expected
    assert m(text).matches_value("") is expected


# --- several matchers are ANDed; braces --------------------------------------------------


def test_several_matchers_are_anded() -> None:
    ms = parse_matchers('env="prod",region=~"eu-.*"')
    assert matches(ms, PROD)
    assert not matches(ms, {**PROD, "region": "us-east-1"})
    assert not matches(ms, {**PROD, "env": "staging"})
    assert matches_getter(ms, lambda k: PROD.get(k, ""))
    assert not matches_getter(ms, lambda k: {"env": "prod"}.get(k, ""))
    assert matches((), PROD)  # no matcher: nothing to fail
    assert keys_of(ms) == ("env", "region")


def test_order_is_irrelevant() -> None:
    a = parse_matchers('env="prod",team=~"pay.*"')
    b = parse_matchers('team=~"pay.*",env="prod"')
    assert sorted(a, key=str) == sorted(b, key=str)
    for attrs in (PROD, {"env": "prod"}, {"team": "payroll"}, {}):
        assert matches(a, attrs) == matches(b, attrs)


@pytest.mark.parametrize(
    "text",
    [
        '{env="prod",region=~"eu-.*"}',
        '  { env = "prod" , region =~ "eu-.*" }  ',
        '{env="prod",region=~"eu-.*",}',
        'env="prod", region=~"eu-.*"',
        "env=prod,region=~eu-.*",
    ],
)
def test_braces_and_spacing(text: str) -> None:
    ms = parse_matchers(text)
    assert [str(x) for x in ms] == ['env="prod"', 'region=~"eu-.*"']


def test_compile_matchers_reads_stored_matchers() -> None:
    compiled = compile_matchers(('collector.os="linux"', 'role=~"node-agent|host-agent"'))
    assert matches(compiled, {"collector.os": "linux", "role": "host-agent"})
    assert not matches(compiled, {"collector.os": "linux", "role": "gateway"})


def test_matcher_built_directly_compiles_its_regex() -> None:
    assert Matcher("env", "=~", "prod.*").matches({"env": "production"})
    with pytest.raises(MatcherError):
        Matcher("env", "=~", "(")
    with pytest.raises(MatcherError):
        Matcher("env", "==", "x")


# --- parse errors name the column ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("env", 4, "expected an operator"),
        ('env "prod"', 5, "expected an operator"),
        ('env~"prod"', 4, "expected an operator"),
        ('env=="prod"', 5, "expected a value"),
        ('env="prod', 5, "unterminated quoted string"),
        ("=prod", 1, "expected a label name"),
        ("env='prod'", 5, "single quotes"),
        ('env="a\\qb"', 7, "unknown escape \\q"),
        ('env="a\\x4"', 7, 'bad escape \\x4"'),
        ('env="\\400"', 6, "bad escape \\400"),
        ('env="\\uD800"', 6, "bad escape \\uD800"),
        ('env="\\', 6, "unterminated escape"),
        ('env="prod" x', 12, "unexpected 'x'"),
        ('""="x"', 1, "empty label name"),
        ("", 1, "expected a label name"),
    ],
)
def test_parse_matcher_errors_name_the_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(MatcherError) as exc:
        parse_matcher(text)
    assert exc.value.position + 1 == column, str(exc.value)
    assert reason in exc.value.reason
    assert f"at column {column}:" in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ('env="prod" region="eu"', 12, "expected ','"),
        ('{env="prod"', 12, "missing closing '}'"),
        ('{env="prod"} x', 14, "after '}'"),
        ('env="prod",,x=1', 12, "expected a label name"),
        ('env="prod",region', 18, "expected an operator"),
        ("{}", 1, "no matcher given"),
        ("   ", 1, "no matcher given"),
        ('env="prod"}', 11, "expected ','"),
    ],
)
def test_parse_matchers_errors_name_the_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(MatcherError) as exc:
        parse_matchers(text)
    assert exc.value.position + 1 == column, str(exc.value)
    assert reason in exc.value.reason


def test_200_character_limit() -> None:
    name = "k"
    fits = f'{name}="{"v" * (MAX_MATCHER_LENGTH - 4)}"'
    assert len(fits) == MAX_MATCHER_LENGTH
    assert parse_matcher(fits).value == "v" * (MAX_MATCHER_LENGTH - 4)
    too_long = f'{name}="{"v" * (MAX_MATCHER_LENGTH - 3)}"'
    with pytest.raises(MatcherError, match="longer than 200") as exc:
        parse_matcher(too_long)
    assert exc.value.position == MAX_MATCHER_LENGTH
    # The limit is per matcher: a list of several short ones may be longer in all.
    many = ",".join([fits] * 3)
    assert len(parse_matchers(many)) == 3
    with pytest.raises(MatcherError, match="longer than 200") as exc:
        parse_matchers(f"{fits},{too_long}")
    assert exc.value.position == len(fits) + 1 + MAX_MATCHER_LENGTH


# --- properties -----------------------------------------------------------------------------

names = st.text(min_size=1, max_size=20)
values = st.text(max_size=40)
ops = st.sampled_from(["=", "!=", "=~", "!~"])
# Regexes built from escaped pieces and a few operators: always valid, RE2-compatible.
regex_values = st.lists(
    st.one_of(
        st.text(max_size=5).map(re.escape),
        st.sampled_from([".*", ".+", "[a-z]+", "(a|b)", "x?", "[0-9]{1,3}", "\\d", "\\s*", "(?i:prod)"]),
    ),
    max_size=5,
).map("".join)


@st.composite
def matcher_texts(draw: st.DrawFn) -> str:
    op = draw(ops)
    value = draw(regex_values) if op in ("=~", "!~") else draw(values)
    return str(Matcher.make(draw(names), op, value))


@given(matcher_texts())
@example('"a b"="x"')
@example('"a,b"!="{}"')
@example('"x=y"=~".*"')
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_str_round_trips(text: str) -> None:
    assume(len(text) <= MAX_MATCHER_LENGTH)
    parsed = parse_matcher(text)
    assert str(parsed) == text
    again = parse_matcher(str(parsed))
    assert again == parsed
    assert (again.name, again.op, again.value) == (parsed.name, parsed.op, parsed.value)


@given(st.lists(matcher_texts(), min_size=1, max_size=4), st.booleans())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_list_round_trips(texts: list[str], braced: bool) -> None:
    assume(all(len(t) <= MAX_MATCHER_LENGTH for t in texts))
    joined = ",".join(texts)
    parsed = parse_matchers("{" + joined + "}" if braced else joined)
    assert [str(x) for x in parsed] == texts


@given(names, values, st.one_of(values, st.none()))
def test_equal_and_not_equal_are_complements(name: str, value: str, actual: str | None) -> None:
    attrs = {} if actual is None else {name: actual}
    eq = Matcher.make(name, "=", value).matches(attrs)
    ne = Matcher.make(name, "!=", value).matches(attrs)
    assert eq != ne
    assert eq == ((actual or "") == value)


@given(names, regex_values, st.one_of(values, st.none()))
def test_regex_and_not_regex_are_complements(name: str, regex: str, actual: str | None) -> None:
    attrs = {} if actual is None else {name: actual}
    assert Matcher.make(name, "=~", regex).matches(attrs) != Matcher.make(name, "!~", regex).matches(attrs)


@given(names, values, values)
@example("env", "prod", "production")
@example("env", "a.b", "axb")
@example("env", "a\nb", "a\nb")
def test_escaped_regex_equals_equality(name: str, value: str, actual: str) -> None:
    attrs = {name: actual}
    assert Matcher.make(name, "=~", re.escape(value)).matches(attrs) == Matcher.make(
        name, "=", value
    ).matches(attrs)
    assert Matcher.make(name, "=~", re.escape(value)).matches({name: value})


# Text drawn mostly from the matcher alphabet, so the parser gets deep before it fails.
matcher_alphabet = st.sampled_from(list("{}!=~\"'\\,. \tab*+?()[]|^$\n") + ["env", "é", "🚀", "\\n", "\\\\"])
near_matchers = st.lists(matcher_alphabet, max_size=40).map("".join)


@given(st.one_of(st.text(max_size=60), near_matchers))
@example('a=~"(?P<n>x)(?P=n)"')
@example('a=~"[[:alpha:]]"')
@example('a=~"x{99999999999}"')
@settings(max_examples=500)
def test_parse_raises_only_matcher_error(text: str) -> None:
    for parse in (parse_matcher, parse_matchers):
        try:
            result = parse(text)
        except MatcherError as exc:
            assert 0 <= exc.position <= max(len(text), MAX_MATCHER_LENGTH)
            assert "\n" not in exc.reason
        else:
            assert result is not None


small_values = st.sampled_from(["", "prod", "production", "eu-west-1", "us-east-1", "a.b", "axb"])


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["env", "region", "x"]),
            ops,
            st.sampled_from(["prod", "pro.*", "eu-.*", "", "a.b"]),
        ),
        min_size=1,
        max_size=3,
    ),
    st.lists(
        st.dictionaries(st.sampled_from(["env", "region", "x", "y"]), small_values, max_size=4), max_size=12
    ),
)
def test_cached_predicate_agrees_with_direct_evaluation(
    spec: list[tuple[str, str, str]], fleet: list[dict[str, str]]
) -> None:
    from otelcockpit.fleet.matchers import cached_predicate

    ms = [Matcher.make(n, o, v) for n, o, v in spec]
    predicate = cached_predicate(ms)
    for _ in range(2):  # the second pass answers from the cache
        for attrs in fleet:
            assert predicate(lambda k, a=attrs: a.get(k, "")) == matches(ms, attrs)
