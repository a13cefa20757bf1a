"""Knowledge base: the city's kiosk messages, their causes, the facts that tell causes apart.

The YAML files under ``knowledge/`` are loaded and validated once, before the first message.
Every validation error names the file, the entry and the field in Japanese, because the
people who edit these files are city staff.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# LINE quick replies take at most 13 items with labels of at most 20 characters.
MAX_CHOICES = 13
MAX_LABEL_CHARS = 20

ERROR_ID = re.compile(r"^(?:[1-9][0-9]?|[a-z][a-z0-9-]*)$")
CAUSE_ID = re.compile(r"^(?:[1-9][0-9]?[a-z]|[a-z][a-z0-9-]*)$")
FACT_ID = re.compile(r"^[a-z][a-z0-9_]*$")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=_Model)


class Source(_Model):
    """A source of a statement: its title, optional address and the date the source gives."""

    title: str = Field(min_length=1)
    url: str | None = None
    date: str | None = None


class Choice(_Model):
    """One answer to a fact's question, with the free-text phrases that reveal it."""

    value: str = Field(min_length=1)
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    phrases: tuple[str, ...] = ()
    # The choice a bare 「はい」 ("yes") or 「いいえ」 ("no") picks when the question is asked.
    means: Literal["yes", "no"] | None = None


class Fact(_Model):
    """A named fact about the person's situation that separates causes."""

    id: str
    question: str = Field(min_length=1)
    staff_question: str | None = None
    choices: tuple[Choice, ...] = Field(min_length=2, max_length=MAX_CHOICES)
    # Relative cost of asking; the gain of a question is divided by it.
    cost: float = Field(default=1.0, gt=0)
    # A built-in reader for facts that phrases cannot capture (see bot/extractors.py).
    extractor: str | None = None

    @field_validator("id")
    @classmethod
    def _fact_id(cls, value: str) -> str:
        if not FACT_ID.match(value):
            raise ValueError("英小文字・数字・_ で書いてください（例: card_type）")
        return value

    def choice(self, value: str) -> Choice | None:
        return next((c for c in self.choices if c.value == value), None)


class Cause(_Model):
    """One reason a kiosk message appears, with what the resident and the staff should do."""

    id: str
    summary: str = Field(min_length=1)
    remedy: str = Field(min_length=1)
    staff_notes: str = ""
    sources: tuple[Source, ...] = Field(min_length=1)
    # fact id -> the fact values under which this cause applies.
    conditions: dict[str, tuple[str, ...]] = {}
    # Phrases that point at this cause directly ("途中で取った").
    evidence: tuple[str, ...] = ()
    # Relative prior weight among the causes of the same message.
    prior: float = Field(default=1.0, gt=0)

    @field_validator("id")
    @classmethod
    def _cause_id(cls, value: str) -> str:
        if not CAUSE_ID.match(value):
            raise ValueError("原因の id は「1a」「4b」のような番号＋英小文字か、英小文字の名前です")
        return value

    @field_validator("remedy", "summary")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("空にはできません")
        return value


class KioskError(_Model):
    """One message the kiosk shows, or a known kiosk problem that has no fixed screen text."""

    id: str
    title: str = Field(min_length=1)
    # The exact screen text; {name} marks a part the kiosk fills in (a town, a date, a code).
    screen_text: str | None = None
    variants: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    causes: tuple[Cause, ...] = Field(min_length=1)
    # Answers add whether the message's time is inside the kiosk's service hours.
    about_service_hours: bool = False

    @field_validator("id")
    @classmethod
    def _error_id(cls, value: str) -> str:
        if not ERROR_ID.match(value):
            raise ValueError(
                "id は「1」〜「99」の番号か、英小文字の名前（例: smartphone-cert）です"
            )
        return value

    @property
    def screen_texts(self) -> tuple[str, ...]:
        texts = (self.screen_text, *self.variants) if self.screen_text else self.variants
        return tuple(texts)


class Topic(_Model):
    """A question outside the kiosk's errors, answered with a pointer and no kiosk remedy."""

    id: str
    title: str = Field(min_length=1)
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = Field(min_length=1)
    answer: str = Field(min_length=1)
    sources: tuple[Source, ...] = ()


class Contact(_Model):
    name: str = ""
    phone: str = ""
    hours: str = ""


class Municipality(_Model):
    """The city: who to ask, when the kiosk service runs."""

    name: str = Field(min_length=1)
    prefecture: str = Field(min_length=1)
    office_name: str = ""
    phone: str = ""
    opening_hours: str = ""
    closed_days: str = ""
    kiosk_service_hours: str = ""
    kiosk_service_start: str = ""
    kiosk_service_end: str = ""
    web_page: str = ""
    kiosk_web_page: str = ""
    contacts: dict[str, Contact] = {}


class Intents(_Model):
    """Phrases for conversation moves that are not about a kiosk message."""

    greeting: tuple[str, ...] = ()
    thanks: tuple[str, ...] = ()
    reset: tuple[str, ...] = ()
    handoff: tuple[str, ...] = ()
    vague_error: tuple[str, ...] = ()
    yes: tuple[str, ...] = ()
    no: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    # Words that place a message in the kiosk's world (コンビニ, 証明書, 暗証番号 …): without one
    # of them, and without a screen text, a message is not answered with a kiosk remedy.
    domain: tuple[str, ...] = ()


class KnowledgeError(Exception):
    """The knowledge folder is invalid; ``problems`` lists every problem found, in Japanese."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class KnowledgeBase:
    municipality: Municipality
    errors: tuple[KioskError, ...]
    facts: dict[str, Fact]
    topics: tuple[Topic, ...]
    intents: Intents
    directory: Path
    causes: dict[str, Cause] = field(init=False)
    error_of_cause: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        causes: dict[str, Cause] = {}
        owner: dict[str, str] = {}
        for error in self.errors:
            for cause in error.causes:
                causes[cause.id] = cause
                owner[cause.id] = error.id
        object.__setattr__(self, "causes", causes)
        object.__setattr__(self, "error_of_cause", owner)

    def error(self, error_id: str) -> KioskError:
        return next(e for e in self.errors if e.id == error_id)

    def topic(self, topic_id: str) -> Topic:
        return next(t for t in self.topics if t.id == topic_id)


FILES = {
    "municipality": "municipality.yaml",
    "facts": "facts.yaml",
    "intents": "intents.yaml",
}


def load(directory: str | Path) -> KnowledgeBase:
    """Load and validate a knowledge folder, raising KnowledgeError with every problem found."""
    directory = Path(directory)
    problems: list[str] = []
    if not directory.is_dir():
        raise KnowledgeError([f"{directory}: 知識ベースのフォルダが見つかりません。"])

    municipality = _load_one(directory / FILES["municipality"], Municipality, problems)
    intents = _load_one(directory / FILES["intents"], Intents, problems)
    facts = {f.id: f for f in _load_list(directory / FILES["facts"], "facts", Fact, problems)}
    errors: list[KioskError] = []
    topics: list[Topic] = []
    origin: dict[str, str] = {}
    for path in sorted(directory.glob("errors*.yaml")):
        loaded = _load_list(path, "errors", KioskError, problems)
        origin.update({error.id: path.name for error in loaded})
        errors.extend(loaded)
    for path in sorted(directory.glob("topics*.yaml")):
        topics.extend(_load_list(path, "topics", Topic, problems))
    if not errors:
        problems.append(f"{directory}: errors*.yaml にエラーメッセージが1件もありません。")

    # A fact or cause that failed to load would make every reference to it look wrong, so the
    # cross-checks wait until each file loads on its own.
    if not problems:
        problems.extend(_cross_check(errors, facts, topics, origin))
    if problems or municipality is None or intents is None:
        raise KnowledgeError(problems)
    return KnowledgeBase(
        municipality=municipality,
        errors=tuple(errors),
        facts=facts,
        topics=tuple(topics),
        intents=intents,
        directory=directory,
    )


def _read_yaml(path: Path, problems: list[str]) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{path.name}: ファイルが見つかりません。")
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(
            f"{path.name}: UTF-8 として読めません（{exc.start} バイト目）。"
            "Shift_JIS などで保存された場合は UTF-8 で保存し直してください。"
        )
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1} 行目" if mark is not None else "不明な位置"
        problems.append(f"{path.name}: YAML の書式が正しくありません（{where}）。")
        return None


def _load_one(path: Path, model: type[M], problems: list[str]) -> M | None:
    data = _read_yaml(path, problems)
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(path.name, None, exc, data))
        return None


def _load_list(path: Path, key: str, model: type[M], problems: list[str]) -> list[M]:
    data = _read_yaml(path, problems)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        problems.append(f"{path.name}: 先頭に「{key}:」の一覧が必要です。")
        return []
    items: list[M] = []
    for index, entry in enumerate(data[key], start=1):
        label = entry.get("id") if isinstance(entry, dict) else None
        name = f"「{label}」" if label else f"{index} 件目"
        try:
            items.append(model.model_validate(entry))
        except ValidationError as exc:
            problems.extend(_describe(path.name, name, exc, entry))
    return items


_PYDANTIC_JA = {
    "missing": "必須の項目がありません",
    "string_too_short": "空にはできません",
    "too_short": "項目が足りません",
    "too_long": "項目が多すぎます",
    "extra_forbidden": "知らない項目です（綴りを確認してください）",
    "string_type": "文字列で書いてください",
    "float_parsing": "数値で書いてください",
    "greater_than": "0 より大きい数にしてください",
    "dict_type": "「名前: 値」の形で書いてください",
    "tuple_type": "一覧（- で始まる行）で書いてください",
    "model_type": "「名前: 値」の形で書いてください",
}


def _describe(file: str, entry: str | None, exc: ValidationError, raw: object = None) -> list[str]:
    lines = []
    for err in exc.errors():
        where = _location(err["loc"], raw)
        reason = _PYDANTIC_JA.get(err["type"])
        if err["type"] == "string_too_long":
            limit = err.get("ctx", {}).get("max_length")
            reason = f"{limit} 文字以内にしてください（いまは {len(str(err['input']))} 文字）"
        elif err["type"] == "value_error":
            reason = str(err.get("ctx", {}).get("error", err["msg"]))
        elif reason is None:
            reason = f"値が正しくありません（{err['msg']}）"
        prefix = f"{file}: {entry}の" if entry else f"{file}: "
        lines.append(f"{prefix}{where}: {reason}")
    return lines


# Japanese names of the lists in the YAML files, for error locations.
_LIST_NAMES = {"causes": "原因", "choices": "選択肢", "sources": "出典"}


def _location(loc: tuple[int | str, ...], raw: object) -> str:
    """Render a pydantic error location for staff, such as 原因「4a」の「remedy」."""
    parts: list[str] = []
    node = raw
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            label = item.get("id") if isinstance(item, dict) else None
            name = _LIST_NAMES.get(parts[-1], parts[-1]) if parts else ""
            parts[-1:] = [f"{name}「{label}」" if label else f"{name}の{part + 1}番目"]
            node = item
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    if not parts:
        return "「(全体)」"
    *path, field = parts
    shown = field if field.endswith(("」", "番目")) else f"「{field}」"
    return "の".join([*path, shown])


def _cross_check(
    errors: list[KioskError],
    facts: dict[str, Fact],
    topics: list[Topic],
    origin: dict[str, str],
) -> Iterator[str]:
    yield from _duplicates("errors*.yaml", "エラー", (e.id for e in errors))
    yield from _duplicates("topics*.yaml", "話題", (t.id for t in topics))
    seen_causes: dict[str, str] = {}
    for error in errors:
        for cause in error.causes:
            if cause.id in seen_causes:
                file = origin.get(error.id, "errors.yaml")
                yield (
                    f"{file}: 「{error.id}」の原因の id「{cause.id}」が"
                    f"「{seen_causes[cause.id]}」の原因と重複しています。"
                )
            seen_causes.setdefault(cause.id, error.id)
    for each in facts.values():
        yield from _duplicates(
            "facts.yaml", f"「{each.id}」の選択肢", (c.value for c in each.choices)
        )

    from bot.extractors import EXTRACTORS

    for each in facts.values():
        if each.extractor is None:
            continue
        extractor = EXTRACTORS.get(each.extractor)
        if extractor is None:
            names = "、".join(sorted(EXTRACTORS))
            yield (
                f"facts.yaml: 「{each.id}」の「extractor」: 「{each.extractor}」はありません"
                f"（{names}）。"
            )
            continue
        for value in extractor.values:
            if each.choice(value) is None:
                yield f"facts.yaml: 「{each.id}」: extractor の値「{value}」が選択肢にありません。"

    used: set[str] = set()
    for error in errors:
        file = origin.get(error.id, "errors.yaml")
        if error.screen_text is None and not error.examples and not error.keywords:
            yield (
                f"{file}: 「{error.id}」: screen_text・examples・keywords のどれかが必要です"
                "（どれもないと見つけられません）。"
            )
        for cause in error.causes:
            for fact_id, values in cause.conditions.items():
                fact = facts.get(fact_id)
                if fact is None:
                    yield (
                        f"{file}: 「{error.id}」の原因「{cause.id}」の"
                        f"「conditions.{fact_id}」: facts.yaml にない事実です。"
                    )
                    continue
                used.add(fact_id)
                for value in values:
                    if fact.choice(value) is None:
                        known = "、".join(c.value for c in fact.choices)
                        yield (
                            f"{file}: 「{error.id}」の原因「{cause.id}」の"
                            f"「conditions.{fact_id}」: 「{value}」は選択肢にありません"
                            f"（{known}）。"
                        )
        yield from _unreachable(error, facts, file)
    for fact_id in facts:
        if fact_id not in used:
            yield f"facts.yaml: 「{fact_id}」: どの原因の conditions にも使われていません。"


def _duplicates(file: str, what: str, ids: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            yield f"{file}: {what}の id「{item}」が重複しています。"
        seen.add(item)


def _unreachable(error: KioskError, facts: dict[str, Fact], file: str) -> Iterator[str]:
    """Report causes that no combination of answers can single out.

    Two causes of one message with the same conditions (or none at all) can never be told apart
    by a question, so one of them would never be the answer unless its own evidence phrases
    name it.
    """
    if len(error.causes) < 2:
        return
    for cause in error.causes:
        if cause.evidence:
            continue
        rivals = [
            other.id
            for other in error.causes
            if other is not cause and _indistinguishable(cause, other, facts)
        ]
        if rivals:
            yield (
                f"{file}: 「{error.id}」の原因「{cause.id}」: 「{'」「'.join(rivals)}」と"
                "同じ条件なので、質問で区別できません。conditions か evidence を足してください。"
            )


def _indistinguishable(first: Cause, second: Cause, facts: dict[str, Fact]) -> bool:
    for fact_id in set(first.conditions) | set(second.conditions):
        fact = facts.get(fact_id)
        if fact is None:
            continue
        every = tuple(c.value for c in fact.choices)
        if set(first.conditions.get(fact_id, every)) != set(second.conditions.get(fact_id, every)):
            return False
    return True


def literal_parts(screen_text: str) -> list[str]:
    """Split a screen text at its {placeholders} into the parts the kiosk shows literally."""
    return [part for part in PLACEHOLDER.split(screen_text) if part]


Kind = Literal["answer", "question", "clarify", "fallback", "notice", "handoff"]
