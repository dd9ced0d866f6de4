"""The assistant's evaluation set: a bicycle shop's knowledge base (Spanish and English), its
synonyms, and held-out customer questions labelled with the entry that answers them or `none`.

Files (data/): knowledge_es.csv and knowledge_en.csv (`key;question;alternatives;answer;topic;
language`), synonyms.csv (`language;terms`), questions.csv (`split;language;expected;question`,
`expected` is `<language>:<key>` or `none`). The questions were written before any tuning and split
at random into `dev` (used to choose the retrieval's constants) and `test` (only reported).
"""

import csv
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tertulia.assistant.models import KnowledgeEntry
from tertulia.assistant.retrieval import DEFAULT_THRESHOLD, WorkspaceIndex

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Question:
    split: str
    language: str
    expected: str  # "<language>:<key>" or "none"
    text: str


@dataclass
class Knowledge:
    entries: list[KnowledgeEntry]
    keys: dict[int, str]  # entry id -> "<language>:<key>"
    synonyms: list[tuple[str, list[str]]]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def load_knowledge() -> Knowledge:
    entries: list[KnowledgeEntry] = []
    keys: dict[int, str] = {}
    for language in ("es", "en"):
        for row in _rows(DATA / f"knowledge_{language}.csv"):
            entry_id = len(entries) + 1
            entries.append(
                KnowledgeEntry(
                    id=entry_id,
                    question=row["question"],
                    alternatives=[a for a in row["alternatives"].split("|") if a],
                    answer=row["answer"],
                    buttons=[],
                    topic=row["topic"],
                    language=row["language"],
                    active=True,
                )
            )
            keys[entry_id] = f"{language}:{row['key']}"
    synonyms = [(row["language"], row["terms"].split("|")) for row in _rows(DATA / "synonyms.csv")]
    return Knowledge(entries, keys, synonyms)


def load_questions(split: str | None = None) -> list[Question]:
    questions = [
        Question(r["split"], r["language"], r["expected"], r["question"]) for r in _rows(DATA / "questions.csv")
    ]
    return [q for q in questions if split is None or q.split == split]


_PRODUCTS_ES = [
    "cámara",
    "cubierta",
    "casco",
    "guante",
    "maillot",
    "culotte",
    "zapatilla",
    "pedal",
    "sillín",
    "manillar",
    "puño",
    "cadena",
    "piñón",
    "plato",
    "freno",
    "pastilla",
    "disco",
    "luz",
    "timbre",
    "bomba",
    "bidón",
    "portabidón",
    "alforja",
    "candado",
    "espejo",
    "guardabarros",
]
_PRODUCTS_EN = [
    "tube",
    "tyre",
    "helmet",
    "glove",
    "jersey",
    "shorts",
    "shoe",
    "pedal",
    "saddle",
    "handlebar",
    "grip",
    "chain",
    "sprocket",
    "chainring",
    "brake",
    "pad",
    "rotor",
    "light",
    "bell",
    "pump",
    "bottle",
    "cage",
    "pannier",
    "lock",
    "mirror",
    "mudguard",
]
_BRANDS = [
    "Shimano",
    "SRAM",
    "Campagnolo",
    "Continental",
    "Michelin",
    "Maxxis",
    "Schwalbe",
    "Giro",
    "Bell",
    "Fox",
    "Specialized",
    "Trek",
    "Giant",
    "Orbea",
    "Canyon",
    "Cube",
    "Scott",
    "Merida",
    "Lezyne",
    "Topeak",
    "Abus",
    "Kryptonite",
    "Knog",
    "Castelli",
    "Rapha",
]
_COLOURS_ES = ["negro", "blanco", "rojo", "azul", "verde", "amarillo", "gris", "naranja", "rosa", "violeta"]
_COLOURS_EN = ["black", "white", "red", "blue", "green", "yellow", "grey", "orange", "pink", "purple"]


def padding(count: int, start_id: int, seed: int = 7) -> list[KnowledgeEntry]:
    """Generated product entries ("¿Tienen el casco Giro 214 en rojo?"), to measure retrieval with a
    large knowledge base; they share the real entries' vocabulary on purpose."""
    rng = random.Random(seed)
    out: list[KnowledgeEntry] = []
    for n in range(count):
        spanish = n % 2 == 0
        products, colours = (_PRODUCTS_ES, _COLOURS_ES) if spanish else (_PRODUCTS_EN, _COLOURS_EN)
        product, brand, colour = rng.choice(products), rng.choice(_BRANDS), rng.choice(colours)
        model = f"{rng.choice('ABCDEFGHKLMRSTXZ')}{rng.randint(10, 999)}"
        if spanish:
            question = f"¿Tienen {product} {brand} {model} en {colour}?"
            alternatives = [f"Precio del {product} {brand} {model}", f"{product} {brand} {model} stock"]
            answer = f"El {product} {brand} {model} en {colour} cuesta {rng.randint(5, 400)} € y está disponible."
        else:
            question = f"Do you have the {brand} {model} {product} in {colour}?"
            alternatives = [f"Price of the {brand} {model} {product}", f"{brand} {model} {product} stock"]
            answer = f"The {brand} {model} {product} in {colour} costs €{rng.randint(5, 400)} and is in stock."
        out.append(
            KnowledgeEntry(
                id=start_id + n,
                question=question,
                alternatives=alternatives,
                answer=answer,
                buttons=[],
                topic="catálogo" if spanish else "catalogue",
                language="es" if spanish else "en",
                active=True,
            )
        )
    return out


@dataclass
class Result:
    answerable: int
    correct: int  # answered (not handed off) with the expected entry
    unanswerable: int
    handed_off_unanswerable: int
    handed_off: int  # hand-offs of any question
    latencies_ms: list[float]

    @property
    def top1(self) -> float:
        return self.correct / self.answerable if self.answerable else 0.0

    @property
    def handoff_recall(self) -> float:
        """Share of unanswerable questions handed off."""
        return self.handed_off_unanswerable / self.unanswerable if self.unanswerable else 0.0

    @property
    def handoff_precision(self) -> float:
        """Share of hand-offs that were unanswerable questions."""
        return self.handed_off_unanswerable / self.handed_off if self.handed_off else 0.0

    def latency(self, quantile: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else 0.0

    def summary(self) -> str:
        return (
            f"top-1 {self.top1:.1%} ({self.correct}/{self.answerable}); "
            f"unanswerable handed off (recall) {self.handoff_recall:.1%} "
            f"({self.handed_off_unanswerable}/{self.unanswerable}); "
            f"hand-off precision {self.handoff_precision:.1%}; "
            f"latency p50 {statistics.median(self.latencies_ms):.2f} ms, p95 {self.latency(0.95):.2f} ms"
        )


def build(knowledge: Knowledge, extra: Sequence[KnowledgeEntry] = ()) -> WorkspaceIndex:
    return WorkspaceIndex.build((1, ""), [*knowledge.entries, *extra], knowledge.synonyms)


def evaluate(
    index: WorkspaceIndex,
    knowledge: Knowledge,
    questions: Sequence[Question],
    threshold: float = DEFAULT_THRESHOLD,
    misses: list[str] | None = None,
) -> Result:
    result = Result(0, 0, 0, 0, 0, [])
    for question in questions:
        started = time.perf_counter()
        answer = index.answer(question.text, question.language, threshold)
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        got = knowledge.keys.get(answer.entry_id or 0, "none") if not answer.handoff else "none"
        if answer.handoff:
            result.handed_off += 1
        if question.expected == "none":
            result.unanswerable += 1
            result.handed_off_unanswerable += answer.handoff
        else:
            result.answerable += 1
            result.correct += got == question.expected
        if misses is not None and got != question.expected:
            found = knowledge.keys.get(answer.entry_id or 0, "-")
            misses.append(f"{question.expected:28} got {got:28} ({found} {answer.confidence:.2f}) {question.text}")
    return result
