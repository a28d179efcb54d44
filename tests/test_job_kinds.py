"""Every job kind behind one interface (jobs.base.JobKind): the registry, and each kind's
admission through it, as the platform's services call it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobs import KINDS, JobKind, SqlKind, get_kind, sql_kind
from jobs.base import one_table_scope
from jobs.he_aggregate import HePlan
from jobs.psi_match import PsiMatchPlan
from policies.admission import QueryScope, TableScope
from policies.disclosure import DisclosureParams
from policies.errors import InputError, PolicyRefusal
from policies.verification import AdmittedRule
from sandbox.demo.data import DEMO_TABLES

PERSONS = DEMO_TABLES["persons"].classification()
FIRMS = DEMO_TABLES["enterprises"].classification()


def test_the_registry_holds_every_kind_a_grant_may_name():
    assert set(KINDS) == {
        "sql_aggregate",
        "psi_match",
        "he_aggregate",
        "verification",
        "model_train",
    }
    for name, kind in KINDS.items():
        assert isinstance(kind, JobKind) and kind.name == name
        assert kind.article.startswith("Art. ")
    with pytest.raises(InputError, match="did you mean 'psi_match'"):
        get_kind("psi_matc")


def test_each_kind_names_a_command_the_cli_has():
    """The command a refusal points to (sql_kind) exists: a renamed command fails here."""
    from sandbox.cli.app import main

    for kind in KINDS.values():
        words = kind.command.split()
        assert words[0] == "sandbox", kind.name
        command = main
        for word in words[1:]:
            assert word in command.commands, f"{kind.name}: no '{word}' in '{kind.command}'"
            command = command.commands[word]


def test_only_sql_kinds_run_as_sql_jobs_and_the_others_say_where_they_run():
    assert isinstance(sql_kind("sql_aggregate"), SqlKind)
    for name, command in [
        ("psi_match", "sandbox psi"),
        ("he_aggregate", "sandbox he sum"),
        ("verification", "sandbox verify define"),
        ("model_train", "sandbox model train"),
    ]:
        with pytest.raises(InputError, match=command):
            sql_kind(name)


def test_psi_match_plans_a_matchable_column_and_refuses_the_others():
    kind = get_kind("psi_match")
    scope = one_table_scope("persons", PERSONS)
    ask = {"dataset": "persons", "column": "pid", "list_size": 500}
    assert kind.referenced_datasets(ask) == ["persons"]
    plan = kind.plan(ask, scope)
    assert isinstance(plan, PsiMatchPlan) and plan.ask.column == "pid"
    assert plan.over_persons  # persons' key is a resident ID: consent is asked (Art. 19)
    with pytest.raises(PolicyRefusal) as refused:
        kind.plan({**ask, "column": "income"}, scope)
    assert refused.value.rule == "psi_column_class"
    with pytest.raises(PolicyRefusal) as refused:
        kind.plan({**ask, "group_by": "county"}, scope)  # a dimension, not public
    assert refused.value.rule == "psi_group_not_public"
    with pytest.raises(InputError, match="no dataset 'firms'"):
        kind.plan({**ask, "dataset": "firms"}, scope)
    with pytest.raises(InputError, match="list_size"):
        kind.referenced_datasets({"dataset": "persons", "column": "pid"})


def test_he_aggregate_plans_with_the_disclosure_parameters_in_force():
    kind = get_kind("he_aggregate")
    request = {"dataset": "enterprises", "key_column": "credit_code", "by": ["county"]}
    scope = one_table_scope("enterprises", FIRMS)
    with pytest.raises(InputError, match="disclosure parameters"):
        kind.plan(request, scope)  # no parameters: nothing is released by default
    tightened = replace(DisclosureParams(), min_entities=25)
    plan = kind.plan(request, replace(scope, disclosure=tightened))
    assert isinstance(plan, HePlan) and plan.min_subjects == 25 and plan.by == ("county",)
    with pytest.raises(PolicyRefusal) as refused:
        kind.plan({**request, "by": ["status"]}, replace(scope, disclosure=tightened))
    assert refused.value.rule == "he_group_not_public"
    with pytest.raises(InputError, match="key_column"):
        kind.referenced_datasets({"dataset": "enterprises", "by": ["county"]})


def test_verification_names_every_table_its_rule_reads_and_admits_it():
    kind = get_kind("verification")
    definition = {
        "name": "firm_active",
        "dataset": "enterprises",
        "keys": ["credit_code"],
        "codes": ["active", "not_found"],
        "rule": "SELECT CASE WHEN COUNT(*) = 0 THEN 'not_found' ELSE 'active' END "
        "FROM enterprises e JOIN persons p ON p.pid = e.name WHERE e.credit_code = $credit_code",
    }
    assert kind.referenced_datasets(definition) == ["enterprises", "persons"]
    scope = QueryScope(
        tables={
            "enterprises": TableScope("enterprises", FIRMS),
            "persons": TableScope("persons", PERSONS),
        }
    )
    simple = {
        **definition,
        "rule": definition["rule"].replace(" JOIN persons p ON p.pid = e.name", ""),
    }
    rule = kind.plan(simple, scope)
    assert isinstance(rule, AdmittedRule) and rule.tables == ("enterprises",)
    with pytest.raises(PolicyRefusal) as refused:  # a key parameter against another column
        kind.plan({**simple, "rule": simple["rule"].replace("e.credit_code", "e.status")}, scope)
    assert (refused.value.rule, refused.value.article) == ("parameter_position", "Art. 15")
