"""Sessions: ``nox -s tests`` runs everything the README promises (spec, both backends, the
conformance suite against every backend and oracle, lint) and prints the conformance summary.

One virtual environment per framework keeps installs short:

* ``torch``: torch==2.13.0 (always first), tp-spec, tp-torch, e3nn, cuequivariance-torch,
  tp-conformance: spec tests and doctests (their e3nn oracles are installed here), tp-torch
  tests, conformance for the NumPy reference (with the golden-vector and broken-backend
  meta-tests), tp_torch and the torch oracles.
* ``jax``:   jax, tp-spec, tp-jax, e3nn-jax, cuequivariance-jax, tp-conformance: tp-jax tests,
  conformance for tp_jax and the jax oracles.
* ``mace``:  torch==2.13.0 and mace-torch (which pins e3nn 0.4.4, hence its own environment),
  tp-spec, tp-torch: the tests that compare with MACE itself (``packages/tp-torch/tests/mace``),
  the e3nn conversions against e3nn 0.4.4 and the training benchmark's command.
* ``nequip``: torch==2.13.0 and nequip (its own e3nn): the converted NequIP models.
* ``lint``:  ruff.
* ``docs``:  Sphinx HTML with warnings as errors, and the doctests.
* ``summary``: merges the per-session JSON records into one table (backend x op x method).

Individual runs: ``nox -s spec`` (NumPy only), ``nox -s conformance-numpy`` (or ``-tp_torch``,
``-tp_jax``, ``-oracles-torch``, ``-oracles-jax``), ``nox -s docs``, ``nox -s bench -- <args>``,
``nox -s train`` (the MACE and NequIP training benchmark, in ``train_mace`` / ``train_nequip``).
Extra pytest arguments go after ``--``: ``nox -s torch -- -x -k forward``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"  # uv must not resolve torch: the pinned wheel is local
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).resolve().parent
SUMMARY_DIR = ROOT / ".nox" / "_conformance_summary"
TORCH = "torch==2.13.0"  # never unpinned: an unpinned torch pulls GBs of CUDA wheels
TORCH_ORACLES = ["e3nn", "cueq_torch", "oeq"]
JAX_ORACLES = ["e3nn_jax", "cueq_jax"]
# The conformance suite compiles a few thousand small XLA programs (each op x dtype x weight
# layout x case x method) whose run time is negligible: LLVM's optimisation level 0 cuts the
# compile time ~1.7x (measured on the MIMO L=4 fused CGTP: 16.5 -> 9.9 s CPU for forward, VJP and
# force loss). HLO-level passes still run, so the numbers are those of a default build to well
# within the float64 tolerance. The tp-jax package tests, as compile-bound, run at the same
# level (7.5 -> 5.7 min on 2 cores); the benchmarks keep the default level.
XLA_TEST_FLAGS = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
# In the everyday run (``tests``), tp_jax's ``dense`` method and cuEquivariance adapter skip
# the paper cases at L = 5, 6 (112 tests, about a third of the suite's XLA compile time: their
# dense CG tables make the largest programs); L <= 4 runs the same code. ``nox -s
# conformance-tp_jax`` runs everything.
JAX_CI_KEYWORD = "not ((dense or cueq) and (L5 or L6))"


def _local(session: nox.Session, *paths: str) -> None:
    """Editable installs of the repository's own distributions that exist (another person may
    still be writing one: a missing package shows up as a skipped backend in the summary)."""
    present = []
    for p in paths:
        if (ROOT / p / "pyproject.toml").is_file():
            present.append(p)
        else:
            session.warn(f"{p}/pyproject.toml not found: not installed")
    args = [a for p in present for a in ("-e", str(ROOT / p))]
    if args:
        session.install(*args)


def _pytest(session: nox.Session, *args: str, allow_empty: bool = False,
            env: dict[str, str] | None = None) -> None:
    codes = [0, 5] if allow_empty else [0]
    session.run("python", "-m", "pytest", *args, *session.posargs, success_codes=codes,
                env=env or {})


def _conformance(session: nox.Session, label: str, backends: list[str],
                 case_tag: str | None = None, env: dict[str, str] | None = None,
                 keyword: str | None = None) -> None:
    """Run the shared suite against ``backends`` on every CPU core (pytest-xdist; all tests of
    one backend/method/case in one worker, which reuses what the backend cached for it);
    records go to the summary folder."""
    SUMMARY_DIR.mkdir(parents=True, exist_ok=True)
    args = ["conformance/tests", "-q", "-p", "no:cacheprovider", "-n", "auto",
            "--dist", "loadgroup", f"--summary-json={SUMMARY_DIR / (label + '.json')}"]
    if case_tag:
        args.append(f"--case-tag={case_tag}")
    if keyword:
        args += ["-k", keyword]
    for b in backends:
        args.append(f"--backend={b}")
    if "numpy" not in backends:  # the suite-level meta-tests run once, with numpy
        args += ["--deselect", "conformance/tests/test_golden.py",
                 "--deselect", "conformance/tests/test_broken_backends.py"]
    session.run("python", "-m", "pytest", *args, *session.posargs, env=env or {})


def _package_tests(session: nox.Session, pkg: str, env: dict[str, str] | None = None) -> None:
    """A backend's own tests, on every core (tp-jax's are XLA-compile-bound)."""
    tests = ROOT / "packages" / pkg / "tests"
    if tests.is_dir():
        _pytest(session, str(tests), "-q", "-p", "no:cacheprovider", "-n", "auto", env=env)
    else:
        session.warn(f"packages/{pkg}/tests not found: skipped")


# ----------------------------------------------------------------------------- installs
# pytest < 9.2: from 9.2 on, pytest-xdist's ``--dist loadgroup`` silently stops grouping
# (pytest-xdist issue #1386); the conformance run then recompiles what another worker built
# (tp_jax: 30 -> 19 CPU-minutes with grouping). conformance/tests/conftest.py fails loudly if
# grouping is lost.
TEST_TOOLS = ["pytest>=8,<9.2", "pytest-xdist>=3", "scipy", "sympy"]


def install_spec(session: nox.Session) -> None:
    session.install(*TEST_TOOLS)
    _local(session, "spec", "conformance")


def install_torch(session: nox.Session, oracles: bool = True) -> None:
    session.install(TORCH)  # first: everything after must reuse this torch
    extra = ["e3nn", "cuequivariance", "cuequivariance-torch"] if oracles else []
    session.install(*TEST_TOOLS, *extra)
    _local(session, "spec", "packages/tp-kernels", "packages/tp-torch", "conformance")


def install_jax(session: nox.Session, oracles: bool = True) -> None:
    extra = ["e3nn-jax", "cuequivariance", "cuequivariance-jax"] if oracles else []
    session.install("jax", "flax", "optax", "ase", *TEST_TOOLS, *extra)  # tp_jax.flax/.models
    _local(session, "spec", "packages/tp-kernels", "packages/tp-jax", "conformance")


# ----------------------------------------------------------------------------- sessions
@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Everything: spec, torch, jax (each with its conformance backends), lint, then the
    summary table. Fails if any of them fails."""
    shutil.rmtree(SUMMARY_DIR, ignore_errors=True)
    for name in ("torch", "jax", "mace", "nequip", "lint", "docs", "summary"):
        session.notify(name, posargs=session.posargs)


def _spec_tests(session: nox.Session) -> None:
    _pytest(session, "spec/tests", "-q", "-p", "no:cacheprovider")
    _pytest(session, "--doctest-modules", "spec/src", "conformance/src/tp_conformance/cases.py",
            "-q", "-p", "no:cacheprovider")


@nox.session
def spec(session: nox.Session) -> None:
    """NumPy only: tp-spec tests + doctests; conformance of the NumPy reference."""
    install_spec(session)
    _spec_tests(session)
    _conformance(session, "spec", ["numpy"])


@nox.session
def torch(session: nox.Session) -> None:
    """Spec tests; tp-torch tests; conformance of numpy, tp_torch and the torch oracles (e3nn,
    cuEquivariance naive; OpenEquivariance where CUDA exists)."""
    install_torch(session)
    session.install("-r", str(ROOT / "benchmarks" / "requirements.txt"))
    _spec_tests(session)
    _package_tests(session, "tp-kernels")
    _package_tests(session, "tp-torch")
    _pytest(session, "benchmarks/tests", "-q", "-p", "no:cacheprovider", "-n", "auto")
    _conformance(session, "torch", ["numpy", "tp_torch", *TORCH_ORACLES])


@nox.session
def jax(session: nox.Session) -> None:
    """tp-jax tests; conformance of tp_jax and of the jax oracles (e3nn-jax, cuEquivariance)."""
    install_jax(session)
    _package_tests(session, "tp-jax", env=XLA_TEST_FLAGS)
    session.install("-r", str(ROOT / "benchmarks" / "requirements.txt"))
    _pytest(session, "benchmarks/tests/test_anchors.py", "benchmarks/tests/test_conv_bench.py",
            "benchmarks/tests/test_threads.py",
            "-q", "-p", "no:cacheprovider")
    _conformance(session, "jax", ["tp_jax", *JAX_ORACLES], env=XLA_TEST_FLAGS,
                 keyword=JAX_CI_KEYWORD)


MACE = "mace-torch==0.3.16"


@nox.session
def mace(session: nox.Session) -> None:
    """The layers and the converted models against MACE itself (mace-torch pins e3nn==0.4.4:
    its own environment)."""
    session.install(TORCH)  # first: mace-torch must reuse this torch
    session.install(MACE, *TEST_TOOLS, "numba")
    _local(session, "spec", "packages/tp-kernels", "packages/tp-torch")
    # e3nn 0.4.4 loads its constants with torch.load, which torch >= 2.6 refuses by default
    tests = ROOT / "packages" / "tp-torch" / "tests"
    # the e3nn conversions also against e3nn 0.4.4 (other Wigner 3j signs than e3nn >= 0.5)
    _pytest(session, str(tests / "mace"), str(tests / "test_e3nn_compat.py"),
            str(ROOT / "benchmarks" / "tests" / "test_train_mace.py"), "-q", "-n", "auto",
            "-p", "no:cacheprovider", env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})


NEQUIP = "nequip==0.19.1"


@nox.session
def nequip(session: nox.Session) -> None:
    """tp_torch inside NequIP's convolution (nequip 0.19 pins its own e3nn: its own
    environment): ``packages/tp-torch/tests/nequip``."""
    session.install(TORCH)  # first: nequip must reuse this torch
    session.install(NEQUIP, *TEST_TOOLS, "ase")
    _local(session, "spec", "packages/tp-kernels", "packages/tp-torch")
    _pytest(session, str(ROOT / "packages" / "tp-torch" / "tests" / "nequip"),
            str(ROOT / "benchmarks" / "tests" / "test_train_nequip.py"), "-q",
            "-p", "no:cacheprovider")


def _machine_label() -> str:
    import os

    return f"cpu-{os.cpu_count()}core"


@nox.session(python=False)
def train(session: nox.Session) -> None:
    """The training benchmark (MACE and NequIP on e3nn and on tp_torch, each model in its own
    environment) into ``benchmarks/results/<machine>/train``; arguments after ``--`` go to
    every ``python -m benchmarks train`` call (e.g. ``-- --steps 4``)."""
    for name in ("train_mace", "train_nequip"):
        session.notify(name, posargs=session.posargs)


def _train(session: nox.Session, model: str, sizes: tuple[str, ...]) -> None:
    out = ROOT / "benchmarks" / "results" / _machine_label() / "train"
    for size in sizes:
        args = ["train", "--model", model, "--size", size, "--out", str(out)]
        session.run("python", "-m", "benchmarks", *args, *session.posargs,
                    env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})


@nox.session
def train_mace(session: nox.Session) -> None:
    """MACE small and medium (``nox -s train``)."""
    session.install(TORCH)  # first: mace-torch must reuse this torch
    # cuequivariance-torch, where a user installs it, adds a third backend; its naive CPU path
    # is far too slow for this session (MACE medium: about a minute per step)
    session.install(MACE, "numba", "matplotlib")
    _local(session, "spec", "packages/tp-kernels", "packages/tp-torch")
    _train(session, "mace", ("small", "medium"))


@nox.session
def train_nequip(session: nox.Session) -> None:
    """NequIP medium (``nox -s train``)."""
    session.install(TORCH)  # first: nequip must reuse this torch
    session.install(NEQUIP, "ase", "matplotlib")
    _local(session, "spec", "packages/tp-kernels", "packages/tp-torch")
    _train(session, "nequip", ("medium",))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check ."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python=False)
def summary(session: nox.Session) -> None:
    """Print the merged conformance table of the sessions that ran (exit 1 if any failed)."""
    files = sorted(str(p) for p in SUMMARY_DIR.glob("*.json"))
    session.run("python3", str(ROOT / "conformance/src/tp_conformance/summary.py"), *files,
                external=True)


# Individual conformance runs, one venv each: conformance-numpy, conformance-tp_torch, ...
_CONFORMANCE = {
    "numpy": (install_spec, ["numpy"]),
    "tp_torch": (lambda s: install_torch(s, oracles=False), ["tp_torch"]),
    "tp_jax": (lambda s: install_jax(s, oracles=False), ["tp_jax"]),  # see XLA_TEST_FLAGS
    "oracles-torch": (install_torch, TORCH_ORACLES),
    "oracles-jax": (install_jax, JAX_ORACLES),
}


def _make_conformance_session(label: str) -> None:
    installer, backends = _CONFORMANCE[label]

    @nox.session(name=f"conformance-{label}")
    def _session(session: nox.Session) -> None:
        installer(session)
        env = XLA_TEST_FLAGS if "jax" in label else None
        _conformance(session, f"conformance-{label}", backends, env=env)
        session.run("python", "-m", "tp_conformance.summary",
                    str(SUMMARY_DIR / f"conformance-{label}.json"))


for _label in _CONFORMANCE:
    _make_conformance_session(_label)


@nox.session
def docs(session: nox.Session) -> None:
    """Sphinx HTML (warnings are errors) and the doctests of the documented modules of the four
    packages (run by pytest, with each module's own namespace). autodoc imports tp_torch and
    tp_jax (CPU torch, jax, flax); the optional libraries of the integrations are mocked in
    ``docs/conf.py``."""
    install_torch(session, oracles=False)  # torch==2.13.0 first, then tp-spec and tp-torch
    install_jax(session, oracles=False)  # jax, flax (tp_jax.flax, tp_jax.models) and tp-jax
    session.install("-r", str(ROOT / "docs" / "requirements.txt"))
    session.run("sphinx-build", "-E", "-W", "-q", "-b", "html", "docs", "docs/_build/html")
    session.run("python", "-m", "pytest", "--doctest-modules", "spec/src",
                "packages/tp-kernels/src", "packages/tp-torch/src", "packages/tp-jax/src",
                "-q", "-p", "no:cacheprovider")


@nox.session
def bench(session: nox.Session) -> None:
    """The cross-framework benchmarks: ``nox -s bench -- <arguments of benchmarks run>``; the
    environment also gets the ``tp-bench`` command (``.nox/bench/bin/tp-bench``), usable from any
    directory."""
    session.install(TORCH)
    session.install("jax", "e3nn", "e3nn-jax", "e3x", "matplotlib", "tqdm", "cuequivariance",
                    "cuequivariance-torch")
    if (ROOT / "benchmarks" / "requirements.txt").is_file():
        session.install("-r", str(ROOT / "benchmarks" / "requirements.txt"))
    _local(session, "spec", "packages/tp-kernels", "packages/tp-torch", "packages/tp-jax")
    session.install("-e", str(ROOT))  # the harness itself: the `tp-bench` command
    session.run("python", "-m", "benchmarks", "run", *session.posargs)
