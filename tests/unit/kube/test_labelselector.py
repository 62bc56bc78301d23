"""Label selectors evaluated as the API server evaluates them: kubectl's syntax and LabelSelector objects."""

from __future__ import annotations

import pytest

from aksnth.kube.labelselector import Op, Requirement, Selector, from_label_selector, parse_selector

SPOT = {"kubernetes.azure.com/scalesetpriority": "spot", "zone": "2", "pool": "spot1"}
REGULAR = {"kubernetes.azure.com/agentpool": "system", "zone": "1"}


@pytest.mark.parametrize(
    ("text", "spot", "regular"),
    [
        ("kubernetes.azure.com/scalesetpriority=spot", True, False),
        ("kubernetes.azure.com/scalesetpriority==spot", True, False),
        ("kubernetes.azure.com/scalesetpriority!=spot", False, True),  # != matches a missing label
        ("kubernetes.azure.com/scalesetpriority", True, False),
        ("!kubernetes.azure.com/scalesetpriority", False, True),
        ("zone in (1,2)", True, True),
        ("zone notin (2, 3)", False, True),
        ("pool notin (x)", True, True),  # notin matches a missing label
        ("zone>1", True, False),
        ("zone<2", False, True),
        ("pool>1", False, False),  # not a number: never matches
        ("zone=2,pool=spot1", True, False),
        (" zone = 2 , pool ", True, False),
        ("", True, True),  # the empty selector selects everything
    ],
)
def test_kubectl_syntax(text: str, spot: bool, regular: bool) -> None:
    selector = parse_selector(text)
    assert (selector.matches(SPOT), selector.matches(REGULAR)) == (spot, regular)


def test_a_selector_prints_in_kubectl_syntax() -> None:
    text = "a=1,b!=2,c in (x,y),d notin (y,z),e,!f,g>3"
    assert str(parse_selector(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=1 b=2", "separated by commas"),
        ("a=1,", "ends too early"),
        ("zone in 1,2", "in parentheses"),
        ("zone in (1 2)", "separated by commas"),
        ("zone>x", "whole number"),
        ("a=b=c", "separated by commas"),
        ("-a=1", "unexpected '-'"),
        ("a=" + "v" * 64, "not a label value"),
        ("a ~ b", "unexpected '~'"),
    ],
)
def test_bad_selectors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_selector(text)
    assert repr(text) in str(error.value)


def test_label_selector_objects() -> None:
    selector = from_label_selector(
        {"app": "web"}, [("tier", "In", ["front", "edge"]), ("canary", "DoesNotExist", [])]
    )
    assert selector.matches({"app": "web", "tier": "edge"})
    assert not selector.matches({"app": "web", "tier": "edge", "canary": "1"})
    assert not selector.matches({"app": "db", "tier": "edge"})
    assert from_label_selector({}, []) == Selector()  # {} selects every pod of the namespace
    with pytest.raises(ValueError, match="unknown label selector operator 'Like'"):
        from_label_selector(None, [("a", "Like", ["b"])])
    with pytest.raises(ValueError, match="node selectors only"):
        from_label_selector(None, [("a", "Gt", ["1"])])


def test_requirements_print_as_kubectl_reads_them() -> None:
    assert str(Requirement("a", Op.IN, ("1", "2"))) == "a in (1,2)"
    assert str(Requirement("a", Op.DOES_NOT_EXIST)) == "!a"
