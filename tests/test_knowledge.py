import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.knowledge import KnowledgeBase, KnowledgeError, load
from tests.conftest import KNOWLEDGE

SEED_ERRORS = [str(n) for n in range(1, 12)]
SEED_CAUSES = ["1a", "1b", "1c", "1d", "1e", "2a", "3a", "4a", "4b", "5a", "6a", "7a", "8a", "9a"]
SEED_CAUSES += ["10a", "11a"]


def copy_knowledge(tmp_path: Path) -> Path:
    target = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, target)
    return target


def edit_yaml(path: Path, change: object) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(KnowledgeError) as raised:
        load(directory)
    return raised.value.problems


def test_seed_messages_and_causes_present(kb: KnowledgeBase) -> None:
    ids = [e.id for e in kb.errors]
    for error_id in SEED_ERRORS:
        assert error_id in ids
    for cause_id in SEED_CAUSES:
        assert cause_id in kb.causes
    assert len([c for c in kb.causes if c in SEED_CAUSES]) == 16


def test_every_seed_message_has_screen_text(kb: KnowledgeBase) -> None:
    for error_id in SEED_ERRORS:
        assert kb.error(error_id).screen_text


def test_no_radicals_left_in_knowledge(kb: KnowledgeBase) -> None:
    for path in KNOWLEDGE.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert not [ch for ch in text if 0x2E80 <= ord(ch) <= 0x2FDF], path.name


def test_unknown_values_stay_empty(kb: KnowledgeBase) -> None:
    city = kb.municipality
    assert city.name == "古賀市"
    assert city.phone == ""
    assert city.kiosk_service_start == "06:30"
    assert city.kiosk_service_end == "23:00"


def test_empty_remedy_rejected(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)

    def blank(data: dict) -> None:  # type: ignore[type-arg]
        data["errors"][0]["causes"][0]["remedy"] = "  "

    edit_yaml(folder / "errors.yaml", blank)
    problems = problems_of(folder)
    assert any("errors.yaml" in p and "「1」" in p and "remedy" in p for p in problems)


def test_duplicate_error_id_rejected(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)
    edit_yaml(folder / "errors.yaml", lambda d: d["errors"].append(dict(d["errors"][1])))
    assert any("重複" in p for p in problems_of(folder))


def test_unknown_fact_in_condition_rejected(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)

    def add(data: dict) -> None:  # type: ignore[type-arg]
        data["errors"][0]["causes"][0]["conditions"] = {"no_such_fact": ["yes"]}

    edit_yaml(folder / "errors.yaml", add)
    assert any("no_such_fact" in p and "facts.yaml にない" in p for p in problems_of(folder))


def test_unused_fact_rejected(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)

    def add(data: dict) -> None:  # type: ignore[type-arg]
        data["facts"].append(
            {
                "id": "unused_fact",
                "question": "使われない質問ですか？",
                "choices": [{"value": "yes", "label": "はい"}, {"value": "no", "label": "いいえ"}],
            }
        )

    edit_yaml(folder / "facts.yaml", add)
    assert any("unused_fact" in p and "使われていません" in p for p in problems_of(folder))


def test_long_choice_label_rejected(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)

    def lengthen(data: dict) -> None:  # type: ignore[type-arg]
        data["facts"][0]["choices"][0]["label"] = "とても長い選択肢の文言が二十文字を超えています"

    edit_yaml(folder / "facts.yaml", lengthen)
    assert any("20 文字以内" in p for p in problems_of(folder))


def test_question_without_choices_rejected(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)
    edit_yaml(folder / "facts.yaml", lambda d: d["facts"][0].update(choices=[]))
    assert any("facts.yaml" in p and "choices" in p for p in problems_of(folder))


def test_indistinguishable_causes_rejected(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)

    def same(data: dict) -> None:  # type: ignore[type-arg]
        causes = data["errors"][0]["causes"]
        for cause in causes[:2]:
            cause["conditions"] = {}
            cause["evidence"] = []

    edit_yaml(folder / "errors.yaml", same)
    assert any("区別できません" in p for p in problems_of(folder))


def test_shift_jis_file_rejected(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)
    path = folder / "municipality.yaml"
    path.write_bytes(path.read_text(encoding="utf-8").encode("shift_jis"))
    assert any("UTF-8" in p for p in problems_of(folder))


def test_broken_yaml_names_line(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)
    (folder / "topics.yaml").write_text("topics:\n  - id: [unclosed\n", encoding="utf-8")
    assert any("topics.yaml" in p and "行目" in p for p in problems_of(folder))


def test_kb_check_command(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "bot.cli", "kb", "check", str(KNOWLEDGE)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "問題はありません" in ok.stdout

    folder = copy_knowledge(tmp_path)
    edit_yaml(folder / "errors.yaml", lambda d: d["errors"][0].pop("causes"))
    bad = subprocess.run(
        [sys.executable, "-m", "bot.cli", "kb", "check", str(folder)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "errors.yaml" in bad.stdout
    assert "causes" in bad.stdout
    assert "必須の項目がありません" in bad.stdout


def test_errors_name_cause_by_id(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)

    def blank(data: dict) -> None:  # type: ignore[type-arg]
        four = next(e for e in data["errors"] if e["id"] == "4")
        four["causes"][0]["remedy"] = " "

    edit_yaml(folder / "errors.yaml", blank)
    problems = problems_of(folder)
    assert any("「4」の原因「4a」の「remedy」" in p for p in problems)
    assert not any("使われていません" in p for p in problems)


def test_duplicate_cause_names_both_messages(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)

    def rename(data: dict) -> None:  # type: ignore[type-arg]
        data["errors"][0]["causes"][1]["id"] = data["errors"][0]["causes"][0]["id"]

    edit_yaml(folder / "errors.yaml", rename)
    assert any("errors.yaml" in p and "重複" in p and "原因" in p for p in problems_of(folder))


def test_serve_refuses_broken_knowledge(tmp_path: Path) -> None:
    folder = copy_knowledge(tmp_path)
    (folder / "facts.yaml").write_text("facts: [", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "MADOGUCHI_KNOWLEDGE_DIR": str(folder)},
        timeout=60,
    )
    assert result.returncode == 1
    assert "facts.yaml" in result.stderr
    assert "Traceback" not in result.stderr
