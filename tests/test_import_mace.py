"""Exact import of mace-torch models, checked without torch.

The fixtures in ``tests/data/mace_torch`` were written by ``experiments/peer/make_mace_fixtures.py``
in the peer venv (mace-torch 0.3.16, e3nn 0.4.4, torch 2.13, float64): small models with every
weight redrawn at random (mace_run_train's default layout with a non-residual first block and
unsorted species; a residual first block with the plain ``MACE`` class, 3 layers, max_ell 3,
correlation 2, per-layer avg_num_neighbors), dumped with ``scalarjax/interop/mace_torch_dump.py``,
and mace-torch's own energies, forces and stresses on a molecule, a periodic Si cell and a
triclinic 4-element cell.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from ase import Atoms

from scalarjax.interop.mace_torch import import_mace, load_dump, torch_available
from scalarjax.interop.mace_torch_dump import Unsupported

FIXTURES = pathlib.Path(__file__).parent / "data" / "mace_torch"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())
MODELS = sorted(REFERENCE["models"])


def _atoms(s: dict) -> Atoms:
    return Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])


def _rel(a, b) -> float:
    """max |a − b| / max |b| (0 when both vanish)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _errors(pot, model: str) -> dict:
    """Relative errors of a scalarjax ``Potential`` against mace-torch on all reference structures,
    evaluated as one padded batch (one compilation)."""
    from scalarjax.data.configuration import Configuration, full_to_voigt
    from scalarjax.graph.batch import batch_graphs, configuration_to_graph

    names = list(REFERENCE["structures"])
    atoms = [_atoms(REFERENCE["structures"][n]) for n in names]
    graphs = [configuration_to_graph(Configuration.from_atoms(a), pot.elements, pot.config.r_max) for a in atoms]
    out_all = pot(batch_graphs(graphs))
    e0 = dict(zip(pot.config.atomic_numbers, pot.config.atomic_energies))
    out, start = {}, 0
    for g, (name, a) in enumerate(zip(names, atoms)):
        ref = REFERENCE["models"][model]["outputs"][name]
        e_e0 = sum(e0[z] for z in a.numbers)
        e = float(out_all["energy"][g])
        f = np.asarray(out_all["forces"][start : start + len(a)])
        start += len(a)
        out[name] = {
            "energy": _rel(e, ref["energy"]),
            "interaction_energy": _rel(e - e_e0, ref["energy"] - e_e0),
            "forces": _rel(f, ref["forces"]),
        }
        if "stress" in ref:
            out[name]["stress"] = _rel(full_to_voigt(np.asarray(out_all["stress"][g])), ref["stress"])
    return out


@pytest.fixture(scope="module", params=MODELS)
def imported64(request, tmp_path_factory):
    run = import_mace(FIXTURES / f"{request.param}.npz", tmp_path_factory.mktemp("imp") / "run", "float64")
    return request.param, run


def test_float64_parity_with_mace_torch(imported64):
    from scalarjax.training.evaluate import load_run

    model, run = imported64
    errors = _errors(load_run(run), model)
    worst = max(v for e in errors.values() for v in e.values())
    assert worst <= 1e-8, errors
    # All three quantities were compared on every structure (stress on the two periodic ones).
    assert sum("stress" in e for e in errors.values()) == 2


def test_product_basis_projection_is_exact(imported64):
    """mace's redundant coupling paths lie in e3nn-jax's reduced basis: least-squares residual ~0."""
    _, run = imported64
    report = json.loads((run / "import_report.json").read_text())
    proj = report["product_projection"]
    assert proj and max(p["relative_residual"] for p in proj) < 1e-12
    # mace's basis is redundant for some (L, ν): more torch paths than e3nn-jax's reduced basis.
    assert any(p["torch_paths"] > p["jax_paths"] for p in proj) or all(p["torch_paths"] == p["jax_paths"] for p in proj)
    # e3nn-torch's normalize2mom(silu) constant is a Monte-Carlo estimate, not the exact one.
    assert all(abs(c - 1.6765324703310907) > 1e-4 for c in report["silu_cst_torch"])


def test_run_directory_loads_like_a_trained_run(imported64):
    model, run = imported64
    cfg = (run / "config.yaml").read_text()
    stats = json.loads((run / "statistics.json").read_text())
    assert "kind: mace" in cfg and (run / "best").is_dir()
    assert stats["atomic_numbers"] == sorted(REFERENCE["models"][model]["spec"]["zs"])


def test_float32_import_parity(tmp_path):
    from scalarjax.calculator import Calculator

    model = "scaleshift_l2"
    run = import_mace(FIXTURES / f"{model}.npz", tmp_path / "run32", "float32")
    calc = Calculator.from_run(run)
    assert calc.config.dtype == "float32"
    s = REFERENCE["structures"]["mixed_cell"]
    atoms = _atoms(s)
    atoms.calc = calc
    ref = REFERENCE["models"][model]["outputs"]["mixed_cell"]
    assert _rel(atoms.get_potential_energy(), ref["energy"]) < 1e-5
    assert _rel(atoms.get_forces(), ref["forces"]) < 1e-5
    assert _rel(atoms.get_stress(), ref["stress"]) < 1e-5


def test_float32_model_dump_imports_and_a_wrong_clebsch_gordan_is_refused(tmp_path):
    """A model trained in float32 dumps its Clebsch-Gordan blocks in float32 (found importing the
    mlearn Si model mace_run_train wrote): they pass the convention check; a block that is not
    e3nn-jax's up to a sign is refused."""
    from scalarjax.interop.mace_torch_dump import Unsupported

    src = FIXTURES / "scaleshift_l2"
    arrays = dict(np.load(f"{src}.npz"))
    cg = sorted(k for k in arrays if k.startswith("cg."))
    assert cg
    for name, edit in [("rounded", lambda a: a.astype(np.float32).astype(np.float64)), ("wrong", lambda a: a + 0.1)]:
        edited = {k: (edit(v) if k in cg else v) for k, v in arrays.items()}
        dst = tmp_path / name
        np.savez(f"{dst}.npz", **edited)
        shutil.copy(f"{src}.json", f"{dst}.json")
        if name == "rounded":
            assert (import_mace(pathlib.Path(f"{dst}.npz"), tmp_path / f"run_{name}", "float64") / "best").is_dir()
        else:
            with pytest.raises(Unsupported, match="Clebsch-Gordan"):
                import_mace(pathlib.Path(f"{dst}.npz"), tmp_path / f"run_{name}", "float64")


def test_element_outside_the_model_is_a_clear_error(imported64):
    from scalarjax.calculator import Calculator

    _, run = imported64
    atoms = Atoms("FeO", positions=[[0, 0, 0], [0, 0, 1.8]])
    atoms.calc = Calculator.from_run(run)
    with pytest.raises(ValueError, match="unknown element.*Fe"):
        atoms.get_potential_energy()


def test_cli_import_and_refuses_to_overwrite(tmp_path, capsys):
    from scalarjax.cli import main

    out = tmp_path / "cli_run"
    assert main(["import-mace", str(FIXTURES / "residual_first_l3.npz"), "-o", str(out), "--dtype", "float64"]) == 0
    assert (out / "best").is_dir()
    assert main(["import-mace", str(FIXTURES / "residual_first_l3.npz"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]


def _edited_dump(tmp_path, edit) -> pathlib.Path:
    src = FIXTURES / "scaleshift_l2"
    dst = tmp_path / "edited"
    shutil.copy(f"{src}.npz", f"{dst}.npz")
    meta = json.loads(pathlib.Path(f"{src}.json").read_text())
    edit(meta)
    pathlib.Path(f"{dst}.json").write_text(json.dumps(meta))
    return pathlib.Path(f"{dst}.npz")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["layers"][1].update(interaction_class="RealAgnosticInteractionBlock"), "after the first layer"),
        (lambda m: m["layers"][1].update(interaction_class="RealAgnosticDensityInteractionBlock"), "after the first layer"),
        (lambda m: m.update(format="something-else"), "not a mace-torch dump"),
        (lambda m: m["layers"][1]["product"]["outputs"]["0e"].pop(), "correlation"),
        (lambda m: m.update(num_bessel=m["num_bessel"] - 1), "Bessel"),
        (lambda m: m.update(layers=m["layers"][:1], readouts=m["readouts"][:1]), "single interaction"),
    ],
)
def test_unsupported_dump_is_one_line_error_and_writes_nothing(tmp_path, capsys, edit, message):
    from scalarjax.cli import main

    dump = _edited_dump(tmp_path, edit)
    out = tmp_path / "run"
    assert main(["import-mace", str(dump), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scalarjax: error:") and message in err[0], err
    assert not out.exists() and not list(tmp_path.glob(".run.partial-*"))


def test_not_a_model_file(tmp_path, capsys):
    from scalarjax.cli import main

    bogus = tmp_path / "notes.npz"
    bogus.write_text("hello")
    assert main(["import-mace", str(bogus), "-o", str(tmp_path / "run")]) == 2
    assert "no such file" in capsys.readouterr().err  # a dump needs its .json beside it
    other = tmp_path / "model.model"
    other.write_text("not a pickle")
    assert main(["import-mace", str(other), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    if not torch_available():  # CI: says what to install or which command to run
        assert "mace_torch_dump" in err[0] and "pip install" in err[0]
    else:
        assert "not a torch model file" in err[0]
    assert not (tmp_path / "run").exists()


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import scalarjax.training.trainer as trainer

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_params", boom)
    with pytest.raises(KeyboardInterrupt):
        import_mace(FIXTURES / "residual_first_l3.npz", tmp_path / "run", "float64")
    assert list(tmp_path.iterdir()) == []


def test_dump_round_trip_is_plain_arrays():
    arrays, meta = load_dump(FIXTURES / "scaleshift_l2.json")
    assert all(a.dtype == np.float64 for a in arrays.values())
    assert meta["model_class"] == "ScaleShiftMACE" and meta["atomic_numbers"] == [8, 1, 14, 6]
    with pytest.raises(Unsupported):
        load_dump(FIXTURES / "missing.npz")


def test_torch_side_rejections_recorded_by_the_fixture_script():
    """What the dump step (torch side) says for unsupported models, as recorded by make_mace_fixtures.py
    in the peer venv: one line each, naming what is unsupported."""
    rejected = REFERENCE["rejected"]
    expect = {
        "multi_head": "multi-head",
        "density_interaction": "RealAgnosticDensityInteractionBlock",
        "nonlinear_interaction": "RealAgnosticResidualNonLinearInteractionBlock",
        "zbl_pair_repulsion": "ZBL",
        "gaussian_radial": "GaussianBasis",
        "agnostic_product": "use_agnostic_product",
        "not_a_model_pickle": "dict is not supported",
        "text_file": "not a torch model file",
    }
    for case, needle in expect.items():
        assert needle in rejected[case] and "\n" not in rejected[case], (case, rejected[case])
