"""The parameter table (engine/params.py) is the only list of the job's parameters: the command line, the
Scipion form, the form's job arguments and the checks are all made from it, and each reaches its field."""
import dataclasses

import pytest

from scipion_abinitrefine import cli
from scipion_abinitrefine.engine import bounds, params
from scipion_abinitrefine.tests import protocol_cases as C
from scipion_abinitrefine.tests.scipion_env import run_child


def other_value(f):
    """A valid value of field ``f`` that differs from its default."""
    d = params.default(f)
    if params.kind(f) is bool:
        return not d
    if params.kind(f) is str:
        return f.metadata["example"]
    lo, hi = f.metadata["lo"], f.metadata["hi"]
    v = d * 2 + 1
    if hi is not None and v > hi:
        v = d * 0.5 if d * 0.5 != d else (lo + hi) / 2
    if lo is not None and v <= lo:
        v = lo + (hi - lo) / 2 if hi is not None else lo + 1
    v = params.kind(f)(v)
    assert v != d, f.name
    return v


def test_every_command_line_option_reaches_its_field():
    opts = params.cli_options()
    assert len({flag for flag, _ in opts}) == len(opts)
    for flag, f in opts:
        v = other_value(f)
        argv = [flag] if params.kind(f) is bool else [flag, str(v)]
        p = cli.job_params_from_args(argv)
        assert getattr(p, f.name) == v, (flag, getattr(p, f.name), v)
        # and nothing else moved
        for g in dataclasses.fields(p):
            if g.name not in (f.name, "backend"):
                assert getattr(p, g.name) == params.default(g), (flag, g.name)
        assert not bounds.check(p), (flag, bounds.check(p))


def test_the_table_is_complete():
    seen = set()
    for name, f in params.form_fields():
        m = f.metadata
        assert m["flag"], f"{f.name}: a form field must reach the job through a command-line flag"
        assert m["help"] and m["section"] in params.SECTIONS and name not in seen, f.name
        assert m["line"] is None or m["line"] in params.LINES, f.name
        seen.add(name)
    for f, m in params.table():
        assert m["label"], f.name
        if params.kind(f) in (int, float):  # every number has bounds that the checks apply
            assert m["lo"] is not None or m["hi"] is not None, f.name
    # the sections of the Scipion form each hold a parameter a user sees at the Normal level
    for s in params.SECTIONS:
        assert any(f.metadata["section"] == s and not f.metadata["advanced"] for _, f in params.form_fields()), s


def test_bounds_and_data_checks_name_the_field():
    bad = params.JobParams(init_lr=0.0, top_k=0, radius_step=11.0)
    errors = bounds.check(bad)
    for name in ("init_lr", "top_k", "radius_step"):
        assert any(f"({name})" in e for e in errors), (name, errors)
    errs = params.data_errors(params.JobParams(max_res_A=3.0, align_res_A=2.5, mask_diameter_A=200.0),
                              box=64, apix=2.0, n_particles=400)
    for name in ("max_res_A", "align_res_A", "mask_diameter_A", "final_minibatch"):
        assert any(f"({name})" in e for e in errs), (name, errs)
    assert params.data_errors(params.JobParams(final_minibatch=100), box=64, apix=2.0, n_particles=400) == []


def test_every_form_parameter_reaches_the_engine_with_its_value(tmp_path):
    """A protocol whose every job parameter differs from its default gives the job those values, and a fresh
    form gives the engine's defaults (the table's defaults reach the form)."""
    values = {name: other_value(f) for name, f in params.form_fields()}
    res = run_child(f"{C.__name__}:child_form_values", tmp_path / "scipion", dict(values=values), timeout=240)
    fields = dict((name, f) for name, f in params.form_fields())
    assert set(res["set"]) == set(values)
    for name, got in res["set"].items():
        assert got == values[name], (name, fields[name].name, got, values[name])
    for name, got in res["fresh"].items():
        assert got == params.default(fields[name]), (name, got)


def test_every_run_option_says_its_default(capsys):
    """``abinitrefine run --help`` names every job option's default (a user should not have to read the code)."""
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split("\noptions:", 1)[1].split())
    helps = {flag: hlp for flag, _, _, hlp in cli.RUN_OPTIONS}
    for flag, f in params.cli_options():
        d = params.default(f)
        shown = ("on" if d else "off") if isinstance(d, bool) else f"{d:g}" if isinstance(d, (int, float)) else d
        assert helps[flag].endswith(f"Default: {shown}" + (" A" if f.name.endswith("_A") else "")), helps[flag]
        assert f"{flag} " in text, flag
    assert text.count("Default:") >= len(helps)
