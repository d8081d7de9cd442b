"""Run README's "Your first hour" as written, on a fresh clone with a fresh virtual environment.

    python3 scripts/first_hour.py /tmp/first-hour

Clones this repository's committed HEAD into DIR/infopro, sets it up with README's first command's install
part (CPU torch wheel, then `pip install -e .`), then runs each ```bash and ```python block of the section in
order, in that clone, with the environment's `bin` first on PATH. Every block's output goes to
DIR/first_hour.md (the text to compare with README's output blocks); the first block that fails stops it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP = "python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 && .venv/bin/pip install -q -e ."


def section_blocks(readme: str, title: str = "## Your first hour") -> list[tuple[str, str]]:
    """The (language, code) of each ```bash / ```python block of README's section `title`."""
    start = readme.index(title)
    end = readme.find("\n## ", start + len(title))
    text = readme[start:end if end != -1 else len(readme)]
    return re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="an empty or missing folder")
    args = parser.parse_args()
    if args.dir.exists() and any(args.dir.iterdir()):
        sys.exit(f"{args.dir} is not empty; give an empty or missing folder")
    clone = args.dir / "infopro"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(SETUP, shell=True, cwd=clone, check=True)
    env = {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)  # the installed package, not a checkout's source
    report = [f"# README 'Your first hour' on a fresh clone of {ROOT} at {time.strftime('%Y-%m-%d %H:%M')}", ""]
    for language, code in section_blocks((clone / "README.md").read_text()):
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [str(clone / ".venv/bin/python"), "-c", code]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - start
        report += [f"```{language}", code.rstrip(), "```", f"exit {done.returncode}, {seconds:.0f} s:", "```",
                   done.stdout.rstrip(), "```", ""]
        (args.dir / "first_hour.md").write_text("\n".join(report))
        print(f"{language} block: exit {done.returncode} in {seconds:.0f} s", flush=True)
        if done.returncode != 0:
            print(done.stdout[-3000:])
            return 1
    print(f"wrote {args.dir / 'first_hour.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
