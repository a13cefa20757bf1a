"""Docs checked against the code: settings in .env.example, commands in the READMEs."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.conftest import ROOT


def setting_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", ())
        names.update(c for c in choices if isinstance(c, str) and c.isupper())
    return names


def documented_names() -> set[str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_every_setting_documented() -> None:
    assert setting_names() - documented_names() == set()


def test_env_example_has_no_unknown_names() -> None:
    assert documented_names() - setting_names() == set()


def readme_commands() -> list[str]:
    commands = []
    for name in ("README.md", "README.ja.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
            for line in block.splitlines():
                command = line.split("  #")[0].strip()
                if "madoguchi" in command and not command.startswith("make"):
                    commands.append(command)
    return sorted(set(commands))


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command: str) -> None:
    stdin = ""
    if "|" in command:
        producer, command = (part.strip() for part in command.split("|", 1))
        stdin = shlex.split(producer)[1] + "\n"
    arguments = shlex.split(command)
    assert arguments[0] == ".venv/bin/madoguchi"
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", *arguments[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(ROOT),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
