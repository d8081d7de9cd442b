"""The docs stay true: every relative link of README.md and docs/*.md leads to a file (and its #anchor to a
heading), every `infopro ...` command they show parses with the real parser, every `infopro.NAME` their
Python blocks use exists, and docs/cli.md is what scripts/make_cli_reference.py writes from the parser."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

import infopro
from infopro.cli import PASSES_FLAGS_ON, get_args_parser
from infopro.errors import InfoProError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", flags=re.S | re.M)
SHELL_LANGUAGES = {"bash", "sh", "shell"}  # bare ``` blocks are what a command printed
# What a shell would do to a line that we cannot re-enact here: command substitution, here-documents.
SHELL_CONSTRUCTS = ("$(", "`", "<<")
SHELL_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "2>&1", "&"}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block."""
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    """The text without fenced blocks and inline code, where a `[x](y)` is not a link."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


# --- links -----------------------------------------------------------------------------------------------

def slugs(markdown: str) -> tuple[set[str], set[str]]:
    """Anchors of a page's headings as GitHub makes them (with -1, -2 for repeats) and as mkdocs does."""
    github, mkdocs = set(), set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", markdown).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).replace("`", "").replace("*", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        github.add(slug if count == 0 else f"{slug}-{count}")
        mkdocs.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower()))
    return github, mkdocs


def links(page: Path) -> list[str]:
    text = prose(page.read_text())
    inline = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    reference = re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", text, flags=re.M)
    return inline + reference


def test_every_relative_link_leads_somewhere():
    checked, broken = 0, []
    for page in PAGES:
        for target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            checked += 1
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                # The same link is followed on GitHub and on the mkdocs site: the anchor must hold in both.
                for site, anchors in zip(("GitHub", "mkdocs"), slugs(file.read_text())):
                    if anchor not in anchors:
                        broken.append(f"{page.relative_to(ROOT)}: {target} (no heading with anchor #{anchor} on {site})")
    assert checked > 20, f"only {checked} relative links found: the link extraction is broken"
    assert not broken, "broken links:\n" + "\n".join(broken)


# --- commands --------------------------------------------------------------------------------------------

def logical_lines(code: str) -> list[str]:
    """Shell lines with `\\` continuations joined."""
    return code.replace("\\\n", " ").splitlines()


def loop_values(code: str) -> dict[str, str]:
    """`for VAR in a b c; do`: VAR -> its first value, so `$VAR` in the loop body parses as a real value."""
    return {var: values.split()[0] for var, values in re.findall(r"\bfor (\w+) in ([^;]+); do\b", code)}


def infopro_argv(line: str, variables: dict[str, str]) -> list[str] | None:
    """The arguments after `infopro` (or `.venv/bin/infopro`, or `-m infopro`) in one shell line, up to a
    shell operator; None when the line runs no infopro command."""
    line = re.split(r";\s*do\s+", line)[-1]  # `for ...; do infopro ...`
    for var, value in variables.items():
        line = line.replace("${" + var + "}", value).replace("$" + var, value)
    tokens = shlex.split(line, comments=True)
    for i, token in enumerate(tokens):
        runs_infopro = token == "infopro" or token.endswith("/infopro")
        if runs_infopro or (token == "-m" and i + 1 < len(tokens) and tokens[i + 1] == "infopro"):
            rest = tokens[i + 1 if runs_infopro else i + 2:]
            end = next((j for j, t in enumerate(rest) if t in SHELL_OPERATORS), len(rest))
            return [t for t in rest[:end] if t != "..."]  # "..." stands for flags the text leaves out
    return None


def parse(argv: list[str]) -> None:
    """Parse as `infopro` does (a subcommand's `-c FILE` applied; reproduce's flags after `--` parsed as
    train's); raises AssertionError with argparse's message when the command would be refused."""
    passed_on = None
    if argv and argv[0] in PASSES_FLAGS_ON and "--" in argv:
        at = argv.index("--")
        argv, passed_on = argv[:at], argv[at + 1:]
    if "-h" in argv or "--help" in argv:
        argv = [a for a in argv if a not in ("-h", "--help")][:1]  # the subcommand must exist
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = get_args_parser(argv).parse_args(argv)
        check_names(args)
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise AssertionError(errors.getvalue().strip().splitlines()[-1]) from None
    except InfoProError as error:
        raise AssertionError(str(error)) from None
    if passed_on is not None:
        parse(["train", *passed_on])


def check_names(args) -> None:
    """The names the parser takes as free text (validated when a command runs) are in their registries."""
    from infopro.data import DATASETS

    for flag, registry in (("arch", infopro.ARCHITECTURES), ("method", infopro.METHODS), ("dataset", DATASETS)):
        name = getattr(args, flag, None)
        if name is not None and name not in registry:
            raise AssertionError(f"--{flag} {name}: not in infopro's registry ({', '.join(registry)})")
    methods = getattr(args, "methods", None)
    if isinstance(methods, str):  # bench: a comma list, checkpointing beside the methods
        for name in methods.split(","):
            if name not in infopro.METHODS and name != "checkpoint":
                raise AssertionError(f"--methods {name}: not a method")


def shown_commands() -> list[tuple[str, str, dict[str, str]]]:
    """(where, line, loop variables) of every shell line in a fenced block of README.md and docs/*.md."""
    found = []
    for page in PAGES:
        for language, code in code_blocks(page.read_text()):
            if language in SHELL_LANGUAGES:
                variables = loop_values(code)
                found += [(str(page.relative_to(ROOT)), line, variables) for line in logical_lines(code)]
    return found


def absolute_configs(argv: list[str]) -> list[str]:
    """`-c configs/...` is a path in the checkout: made absolute, since the test runs elsewhere."""
    return [str(ROOT / a) if i and argv[i - 1] in ("-c", "--config", "--configs", "--grids") and (ROOT / a).exists()
            else a for i, a in enumerate(argv)]


def test_every_infopro_command_shown_parses(tmp_path, monkeypatch):
    # In an empty folder: a `--resume runs/x` shown in the docs must not find a developer's own run.
    monkeypatch.chdir(tmp_path)
    parsed, skipped, failed = 0, [], []
    for where, line, variables in shown_commands():
        if not re.search(r"(^|[\s/])infopro\s", line):
            continue
        if any(c in line for c in SHELL_CONSTRUCTS):
            skipped.append(f"{where}: {line.strip()}")
            continue
        try:
            argv = infopro_argv(line, variables)
        except ValueError:  # shlex: unbalanced quotes
            skipped.append(f"{where}: {line.strip()}")
            continue
        if argv is None:  # infopro mentioned, not run (e.g. pip install 'infopro[svhn]')
            continue
        try:
            parse(absolute_configs(argv))
            parsed += 1
        except AssertionError as error:
            failed.append(f"{where}: {line.strip()}\n    -> {error}")
    assert not failed, "commands in the docs that infopro refuses:\n" + "\n".join(failed)
    # It cannot pass on nothing: the docs show dozens of commands, and few are left unparsed.
    assert parsed >= 40, f"only {parsed} infopro commands parsed: the extraction is broken"
    assert len(skipped) <= 5, "too many commands skipped:\n" + "\n".join(skipped)


def test_scripts_the_docs_run_exist():
    missing = []
    for where, line, _ in shown_commands():
        for script in re.findall(r"(?:python3?|bash)\s+((?:benchmarks|scripts)/[\w./-]+)", line):
            if not (ROOT / script).is_file():
                missing.append(f"{where}: {script}")
    assert not missing, "scripts the docs run that do not exist:\n" + "\n".join(missing)


def test_infopro_names_shown_exist():
    names, missing = 0, []
    for page in PAGES:
        for language, code in code_blocks(page.read_text()):
            if language != "python":
                continue
            for dotted in re.findall(r"\binfopro((?:\.[A-Za-z_]\w*)+)", code):
                names += 1
                if not _resolves("infopro" + dotted):
                    missing.append(f"{page.relative_to(ROOT)}: infopro{dotted}")
        # and the names the prose gives in code spans: `infopro.data.DATASETS`, `infopro.parallel.MeshTrainer`
        for dotted in re.findall(r"`infopro((?:\.[A-Za-z_]\w*)+)(?:\(\))?`", FENCE.sub("", page.read_text())):
            names += 1
            if not _resolves("infopro" + dotted):
                missing.append(f"{page.relative_to(ROOT)}: infopro{dotted}")
    assert names > 5, f"only {names} infopro names found in Python blocks"
    assert not missing, "names the docs use that infopro lacks:\n" + "\n".join(missing)


def _resolves(dotted: str) -> bool:
    """`infopro.a.b` is an attribute or a module, whichever it is."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            return False
    return True


def test_the_site_shows_the_readme_commands():
    """docs/index.md (the site's front page) repeats README's two set-up commands, CI's included: verbatim."""
    def setup_commands(text: str) -> list[str]:
        return [code.strip() for language, code in code_blocks(text) if "python3 -m venv" in code]

    readme = setup_commands((ROOT / "README.md").read_text())
    assert len(readme) == 2 and setup_commands((ROOT / "docs" / "index.md").read_text()) == readme


def test_every_docs_page_is_in_the_site():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if f": {p.name}" not in nav]
    assert not missing, f"docs pages missing from mkdocs.yml's nav: {missing}"


# --- the CLI reference -----------------------------------------------------------------------------------

def test_cli_reference_is_what_the_parser_says():
    spec = importlib.util.spec_from_file_location("make_cli_reference", ROOT / "scripts" / "make_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = (ROOT / "docs" / "cli.md").read_text()
    assert written == module.render(), \
        "docs/cli.md differs from the parser: run `python scripts/make_cli_reference.py` and commit docs/cli.md"
