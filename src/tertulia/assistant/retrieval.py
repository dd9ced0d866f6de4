"""Offline retrieval: which knowledge entry answers a customer's question, and how sure we are.

Text is folded (case and accents, `kit.text.fold`), split into words, stripped of stop words (the
question words "dónde", "cuándo", "where" and "when" are kept) and stemmed with Snowball (Spanish
or English, PyStemmer). Synonyms (a few built-in groups of everyday customer-service words, and the
workspace's own) map every term of a group (a word or a phrase) to one token. In a short question,
a word the knowledge base does not know is replaced by the closest known word within one or two
edits (rapidfuzz), so "debolucion" finds "devolución"; a word of the language (in wordfreq's list
of its common words) is not a typo and is left as it is, so "rojo" does not become "robo".

Each entry is indexed as several documents (its question, each other phrasing, and its answer
with its topic), two ways: words, ranked with BM25 (bm25s), an entry scoring as its best phrasing
plus its answer; and character n-grams of the folded words (3 to 5 letters, TF-IDF cosine), an
entry scoring as its best phrasing, which is close for typos and word forms the stemmer does not
join. Each proposes its best candidates. The scores rank but do not say whether an entry answers
the question at all, so a confidence is computed for the candidates: the share of the question's
information (IDF-weighted words, an unknown word a little more than the rarest) that the entry's
phrasings cover, blended with the share of the best phrasing the question covers. Candidates are
ranked by that confidence plus, as smaller terms, the relative BM25 score and the n-gram
similarities. A threshold on the confidence (`DEFAULT_THRESHOLD`: the lowest that hands off at
least 95 % of the evaluation set's unanswerable dev questions, see docs/assistant.md) separates
answers from hand-offs.

With embeddings on (an embeddings model named in the workspace's language model settings,
`assistant/semantic.py`), each entry also has the cosine similarity of its closest phrasing to the
question (`Semantic`): its best entries join the candidates, the similarity is one more ranking
term (RANK_SEMANTIC_WEIGHT), and the confidence is the larger of the word coverage and the
similarity mapped onto the same scale (`semantic_confidence`), so an entry is answered when either
says it clearly matches. Without them nothing here changes.

Indexes live in memory, per process, per workspace and language, with the workspace's knowledge
version they were built from; a question first reads the version (one primary-key row) and
rebuilds when it moved, so every process sees a change on its next question.
"""

import functools
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import bm25s
import numpy as np
import Stemmer
import wordfreq
from bm25s.stopwords import STOPWORDS_EN_PLUS, STOPWORDS_SPANISH
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein
from sqlalchemy.orm import Session

from tertulia.assistant import repository
from tertulia.assistant.models import LANGUAGES, KnowledgeEntry
from tertulia.kit.text import fold

DEFAULT_THRESHOLD = 0.56
# The answer's words count as much as a phrasing's: entries have few phrasings, and the answer
# often holds the words customers use (chosen on the evaluation set's dev split, as the others).
ANSWER_WEIGHT = 1.0
# Blend of the question's coverage by the entry and the best phrasing's coverage by the question.
QUESTION_COVERAGE_WEIGHT = 0.75
# Typo tolerance applies to questions of at most this many words (long messages are not worth
# the time, and have enough other words to match).
TYPO_MAX_WORDS = 12
TYPO_MIN_LENGTH = 4
CACHE_WORKSPACES = 64
MAX_QUESTION = 2000
# How much a word the knowledge base does not know weighs, as a multiple of the weight of a word
# of one entry: an unknown word is often what the question is about ("motos"), but also often just
# a word nobody wrote into the entries. A multiple of the rarest known word's weight (not the IDF
# of a word in no entry, which grows more slowly) keeps the balance the same at any size: with
# 10,000 entries the rarest words weighed nearly as much as an unknown one and unanswerable
# questions got through. 1.26 is that IDF's ratio at MIN_IDF_ENTRIES, where the threshold is set.
UNKNOWN_WEIGHT = 1.26
# BM25's best candidates and the character n-grams' best candidates, which the confidence
# re-ranks; the weights of BM25 (relative to the best candidate's) and of the character n-gram
# similarity (of the entry's best phrasing, and of its answer) in that ranking.
CANDIDATES = 10
RANK_BM25_WEIGHT = 0.3
RANK_GRAMS_WEIGHT = 1.0
RANK_GRAMS_ANSWER_WEIGHT = 0.3
# Character n-grams within words (a word is padded with a space each side).
GRAM_MIN = 3
GRAM_MAX = 5
# A smaller knowledge base counts as this many entries for the IDF (see LanguageIndex.build).
MIN_IDF_ENTRIES = 100
# bm25s's defaults: phrasings are short and of similar length, and other values changed nothing.
BM25_K1 = 1.5
BM25_B = 0.75
# Embeddings (optional): the similarity's weight in the ranking, and the cosine below which it
# says nothing about whether an entry answers (see `semantic_confidence`).
RANK_SEMANTIC_WEIGHT = 1.0
SEMANTIC_FLOOR = 0.4

_WORD = re.compile(r"[a-z0-9]+")
_STEMMERS = {"es": "spanish", "en": "english"}
# Words that carry no meaning in a customer's question beyond the stop words of the language:
# greetings, courtesy and the frame of asking.
_FILLER = {
    "es": """hola buenas buenos buen dia dias tarde tardes noche noches gracias porfa favor consulta
        consultar pregunta preguntar quisiera queria quiero saber ustedes usted vos che amigo amiga
        oye oigan disculpa disculpe perdon alguien ayuda ayudar ayudame necesito informacion info
        podrian podria pueden puede puedo hay tienen tenes teneis saludos ok vale bueno este esta
        cuanto cuanta cuantos cuantas hacen hace hago tiene tengo haber cual cuales alguno alguna
        vosotros aca aqui ahi q k xq pq porq tb tmb xfa""",
    "en": """hi hello hey good morning afternoon evening thanks thank please pls quick question ask
        wondering wonder know tell want would like could can may help hello there you guys u ur
        whats im ive id dont cant didnt doesnt isnt wont get got""",
}


# Words customers use for the same thing in any shop's questions, on top of a workspace's synonyms.
BUILTIN_SYNONYMS: dict[str, list[list[str]]] = {
    "es": [
        ["precio", "cuesta", "cuestan", "costo", "cobran", "cobrar", "tarifa", "valen"],
        ["tarda", "tardan", "tardar", "demora", "demoran", "demorar", "plazo"],
        ["pedido", "orden", "compra"],
        ["roto", "rota", "dañado", "dañada", "golpeado", "rayado", "averiado"],
        ["equivocado", "equivocada", "incorrecto", "incorrecta"],
        ["llega", "llegar", "recibir", "recibo"],
        ["trabajo", "empleo", "vacante", "vacantes", "currículum", "cv"],
        ["registrarme", "registrarse", "registro", "cuenta"],
        ["descuento", "rebaja", "promoción"],
    ],
    "en": [
        ["price", "cost", "charge", "fee"],
        ["long", "fast", "soon"],
        ["order", "purchase"],
        ["broken", "damaged", "smashed", "cracked", "scratched"],
        ["wrong", "incorrect"],
        ["job", "work", "vacancy", "hiring", "career", "cv"],
        ["fix", "repair", "mend"],
        ["sign in", "log in", "login"],
        ["discount", "money off"],
    ],
}


# Question words the stop-word lists drop but that say what kind of answer is wanted (a place, a
# time): "¿dónde está mi pedido?" is not "¿cuándo llega mi pedido?".
_KEPT = {"es": {"donde", "cuando"}, "en": {"where", "when"}}


def _stopwords(language: str) -> frozenset[str]:
    base = STOPWORDS_SPANISH if language == "es" else STOPWORDS_EN_PLUS
    return frozenset(fold(w) for w in [*base, *_FILLER[language].split()]) - _KEPT[language]


_STOP = {lang: _stopwords(lang) for lang in LANGUAGES}


@functools.cache
def language_words(language: str) -> frozenset[str]:
    """The language's common words, folded (wordfreq's "small" list: about 30,000 words used at
    least once per million words of its sources; about 0.1 s to load)."""
    return frozenset(fold(word) for word in wordfreq.iter_wordlist(language, wordlist="small"))


@dataclass(frozen=True)
class IndexedEntry:
    """What an index keeps of an entry: the index outlives the session that read it, so it holds
    plain values, never ORM objects."""

    id: int
    answer: str
    buttons: tuple[str, ...]
    phrasings: tuple[str, ...] = ()  # the question and its other phrasings (what embeddings embed)


@dataclass(frozen=True)
class Semantic:
    """The question's embedding's cosine similarity to each entry's closest phrasing, per language
    (an array in the index's entry order), for the index of `version` only."""

    version: tuple[int, str]
    by_language: dict[str, np.ndarray]


def semantic_confidence(similarity: float) -> float:
    """A cosine similarity on the confidence's scale: 0 at SEMANTIC_FLOOR and below, 1 at 1. With
    the default threshold (0.56) an entry is answered on its embedding alone from a cosine of
    about 0.74: paraphrases score above that with common embedding models, questions on another
    subject of the same shop mostly below it."""
    return round(min(max((similarity - SEMANTIC_FLOOR) / (1 - SEMANTIC_FLOOR), 0.0), 1.0), 4)


@dataclass(frozen=True)
class Answer:
    answer: str | None
    entry_id: int | None
    confidence: float
    handoff: bool
    reason: str  # "matched", "low_confidence", "no_match", "empty_question", "no_knowledge"
    buttons: tuple[str, ...] = ()
    language: str | None = None


class Analyzer:
    """Text to index tokens for one language, with the workspace's synonyms."""

    def __init__(self, language: str, synonym_groups: Iterable[Sequence[str]] = ()) -> None:
        self.language = language
        self._stemmer = Stemmer.Stemmer(_STEMMERS[language])
        self._stop = _STOP[language]
        self._single: dict[str, str] = {}
        self._phrases: list[tuple[tuple[str, ...], str]] = []
        groups = [*BUILTIN_SYNONYMS[language], *synonym_groups]
        # Groups that share a word are one group (the built-in "precio, cuesta" and a workspace's
        # "precio, tarifa"): each word gets the token of the first group that has it.
        for index, group in enumerate(groups):
            stems_of = [tuple(self._stems(self.words(term))) for term in group]
            token = next((self._single[s[0]] for s in stems_of if len(s) == 1 and s[0] in self._single), f"syn{index}")
            for stems in stems_of:
                if len(stems) == 1:
                    self._single.setdefault(stems[0], token)
                elif stems:
                    self._phrases.append((stems, token))
        self._phrases.sort(key=lambda p: -len(p[0]))

    def words(self, text: str) -> list[str]:
        """Folded content words (no stop words), before stemming."""
        return [w for w in _WORD.findall(fold(text)) if w not in self._stop]

    def _stems(self, words: Sequence[str]) -> list[str]:
        return list(self._stemmer.stemWords(list(words)))

    def stem(self, word: str) -> str:
        return str(self._stemmer.stemWord(word))

    def from_words(self, words: Sequence[str]) -> list[str]:
        stems = self._stems(words)
        if not self._single and not self._phrases:
            return stems
        out: list[str] = []
        i = 0
        while i < len(stems):
            for phrase, token in self._phrases:
                if tuple(stems[i : i + len(phrase)]) == phrase:
                    out.append(token)
                    i += len(phrase)
                    break
            else:
                out.append(self._single.get(stems[i], stems[i]))
                i += 1
        return out

    def tokens(self, text: str) -> list[str]:
        return self.from_words(self.words(text))


def _word_grams(word: str) -> list[str]:
    padded = f" {word} "
    return [padded[i : i + n] for n in range(GRAM_MIN, GRAM_MAX + 1) for i in range(len(padded) - n + 1)]


class CharGrams:
    """TF-IDF cosine similarity over the character n-grams of folded words: close for what words
    miss, a misspelt first letter ("vicicleta", which typo correction does not try), more than two
    edits, a word form the stemmer does not join.

    Built with arrays (a knowledge base repeats few words many times): each distinct word's grams
    once, then (document, gram) pairs counted and sorted by gram into posting lists."""

    def __init__(self, docs: Sequence[Sequence[str]]) -> None:
        self.size = len(docs)
        self.gram_ids: dict[str, int] = {}
        word_ids: dict[str, int] = {}
        flat: list[int] = []  # every distinct word's gram ids, one word after another
        offsets: list[int] = []
        occurrence_words: list[int] = []
        occurrence_docs: list[int] = []
        for doc, words in enumerate(docs):
            for word in words:
                word_id = word_ids.get(word)
                if word_id is None:
                    word_id = word_ids[word] = len(offsets)
                    offsets.append(len(flat))
                    flat.extend(self.gram_ids.setdefault(g, len(self.gram_ids)) for g in _word_grams(word))
                occurrence_words.append(word_id)
                occurrence_docs.append(doc)
        offsets.append(len(flat))
        count = len(self.gram_ids)
        # A gram no document has weighs as the rarest would: it makes the question less like any.
        self.max_idf = math.log(self.size + 1) + 1
        if not occurrence_words:
            self.idf = np.zeros(0, dtype=np.float64)
            self.starts = np.zeros(1, dtype=np.int64)
            self.docs = np.zeros(0, dtype=np.int64)
            self.values = np.zeros(0, dtype=np.float64)
            return
        # The grams of every word occurrence, gathered from the distinct words' grams.
        bounds = np.array(offsets, dtype=np.int64)
        occurring = np.array(occurrence_words, dtype=np.int64)
        lengths = bounds[occurring + 1] - bounds[occurring]
        firsts = np.repeat(bounds[occurring], lengths)
        steps = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        pair_grams = np.array(flat, dtype=np.int64)[firsts + steps]
        pair_docs = np.repeat(np.array(occurrence_docs, dtype=np.int64), lengths)
        keys, tf = np.unique(pair_grams * self.size + pair_docs, return_counts=True)
        grams, owners = keys // self.size, keys % self.size  # sorted by gram, then document
        frequency = np.bincount(grams, minlength=count)
        self.idf = np.log((self.size + 1) / (frequency + 1)) + 1
        weights = (1 + np.log(tf)) * self.idf[grams]
        norms = np.sqrt(np.bincount(owners, weights=weights * weights, minlength=self.size))
        self.docs = owners
        self.values = weights / np.where(norms > 0, norms, 1.0)[owners]
        self.starts = np.concatenate([[0], np.cumsum(frequency)])

    def similarity(self, words: Sequence[str]) -> np.ndarray:
        """Cosine similarity of every document to `words`."""
        counted = Counter(g for word in words for g in _word_grams(word))
        docs: list[np.ndarray] = []
        values: list[np.ndarray] = []
        norm = 0.0
        for gram, tf in counted.items():
            gram_id = self.gram_ids.get(gram)
            weight = (1 + math.log(tf)) * (self.max_idf if gram_id is None else float(self.idf[gram_id]))
            norm += weight * weight
            if gram_id is not None:
                start, end = int(self.starts[gram_id]), int(self.starts[gram_id + 1])
                docs.append(self.docs[start:end])
                values.append(self.values[start:end] * weight)
        if not docs:
            return np.zeros(self.size, dtype=np.float64)
        summed = np.bincount(np.concatenate(docs), weights=np.concatenate(values), minlength=self.size)
        return np.asarray(summed / math.sqrt(norm), dtype=np.float64)


@dataclass
class LanguageIndex:
    analyzer: Analyzer
    entries: list[IndexedEntry]
    # Per document: the entry's position, and whether it is the answer's document.
    doc_entry: np.ndarray
    doc_is_answer: np.ndarray
    doc_tokens: list[frozenset[str]]
    # Per entry: its first document.
    entry_start: np.ndarray
    docs_of_entry: list[list[int]]
    retriever: bm25s.BM25 | None
    grams: CharGrams
    idf: dict[str, float]
    unknown_idf: float
    # Folded surface words of the corpus by their first letter, for typo tolerance.
    words_by_initial: dict[str, list[str]] = field(default_factory=dict)
    known_words: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, language: str, entries: Sequence[KnowledgeEntry], synonyms: Iterable[Sequence[str]]
    ) -> "LanguageIndex":
        analyzer = Analyzer(language, synonyms)
        language_words(language)  # loaded here, once per process, rather than on a question
        corpus: list[list[str]] = []
        surfaces: list[list[str]] = []
        doc_entry: list[int] = []
        doc_is_answer: list[bool] = []
        docs_of_entry: list[list[int]] = []
        words: set[str] = set()
        for position, entry in enumerate(entries):
            docs: list[int] = []
            for text in [entry.question, *(entry.alternatives or [])]:
                surface = analyzer.words(text)
                words.update(surface)
                docs.append(len(corpus))
                corpus.append(analyzer.from_words(surface))
                surfaces.append(surface)
                doc_entry.append(position)
                doc_is_answer.append(False)
            surface = analyzer.words(f"{entry.topic} {entry.answer}")
            words.update(surface)
            docs.append(len(corpus))
            corpus.append(analyzer.from_words(surface))
            surfaces.append(surface)
            doc_entry.append(position)
            doc_is_answer.append(True)
            docs_of_entry.append(docs)
        retriever = None
        if corpus:
            retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
            retriever.index(corpus, show_progress=False)
        # Document frequency per entry (a word in three phrasings of one entry is one entry's word).
        frequency: dict[str, int] = {}
        for docs in docs_of_entry:
            for token in set().union(*(corpus[d] for d in docs if not doc_is_answer[d])):
                frequency[token] = frequency.get(token, 0) + 1
        # A small knowledge base says little about which words are rare: it counts as at least
        # MIN_IDF_ENTRIES entries, the others without these words, so a word of its only entry
        # still weighs like a rare one and an unknown word does not outweigh everything.
        total = max(len(docs_of_entry), MIN_IDF_ENTRIES)
        idf = {t: math.log(1 + (total - df + 0.5) / (df + 0.5)) for t, df in frequency.items()}
        unknown_idf = UNKNOWN_WEIGHT * math.log(1 + (total - 1 + 0.5) / 1.5)
        by_initial: dict[str, list[str]] = {}
        for word in sorted(words):
            if len(word) >= TYPO_MIN_LENGTH - 1:
                by_initial.setdefault(word[0], []).append(word)
        return cls(
            analyzer=analyzer,
            entries=[
                IndexedEntry(e.id, e.answer, tuple(e.buttons or ()), (e.question, *(e.alternatives or [])))
                for e in entries
            ],
            doc_entry=np.array(doc_entry, dtype=np.int64),
            doc_is_answer=np.array(doc_is_answer, dtype=bool),
            doc_tokens=[frozenset(tokens) for tokens in corpus],
            entry_start=np.array([docs[0] for docs in docs_of_entry], dtype=np.int64),
            docs_of_entry=docs_of_entry,
            retriever=retriever,
            grams=CharGrams(surfaces),
            idf=idf,
            unknown_idf=unknown_idf,
            words_by_initial=by_initial,
            known_words=frozenset(words),
        )

    def _correct(self, words: list[str]) -> list[str]:
        """Unknown words of a short question replaced by the closest known word (same first
        letter; one edit up to six letters, two beyond). A word of the language is not a typo,
        only one the knowledge base lacks: "correcting" it made the question about something else
        ("rojo" into "robo", "tires" into "times", "cafe" into a product's "cage"), the more often
        the larger the knowledge base, with more known words within an edit or two."""
        if len(words) > TYPO_MAX_WORDS:
            return words
        dictionary = language_words(self.analyzer.language)
        fixed: list[str] = []
        for word in words:
            if len(word) < TYPO_MIN_LENGTH or word in self.known_words or word in dictionary or word.isdigit():
                fixed.append(word)
                continue
            choices = self.words_by_initial.get(word[0], [])
            limit = 1 if len(word) <= 6 else 2
            best = process.extractOne(word, choices, scorer=Levenshtein.distance, score_cutoff=limit)
            fixed.append(best[0] if best is not None else word)
        return fixed

    def _weight(self, token: str) -> float:
        return self.idf.get(token, self.unknown_idf)

    def search(
        self, question: str, limit: int = 5, semantic: np.ndarray | None = None
    ) -> tuple[list[tuple[int, float]], list[str]]:
        """The best entries (position, confidence), best first, and the question's tokens.

        BM25 (an entry scores as its best phrasing plus its answer) and the character n-grams (an
        entry scores as its best phrasing) each propose candidates; they are ranked by the word
        coverage, plus the BM25 score relative to the best candidate's and the n-gram similarities
        as smaller terms, so a candidate that covers more of the question wins. The confidence is
        the coverage alone (blending the n-gram similarity into it did not separate answers from
        hand-offs better, see docs/assistant.md). `semantic` (embeddings on): each entry's cosine
        similarity to the question, fused as the module's docstring says."""
        words = self.analyzer.words(question)
        tokens = self.analyzer.from_words(self._correct(words))
        if not tokens or self.retriever is None:
            return [], tokens
        if semantic is not None and len(semantic) != len(self.entries):
            semantic = None
        known = [t for t in tokens if t in self.retriever.vocab_dict]
        if not known and semantic is None:
            return [], tokens
        scores = (
            np.asarray(self.retriever.get_scores(known), dtype=np.float64)
            if known
            else np.zeros(len(self.doc_entry), dtype=np.float64)
        )
        per_entry = self._per_entry(scores)
        per_entry[self.doc_entry[self.doc_is_answer]] += ANSWER_WEIGHT * scores[self.doc_is_answer]
        similar = self.grams.similarity(words)
        grams_phrasing = self._per_entry(similar)
        grams_answer = np.zeros(len(self.entries), dtype=np.float64)
        grams_answer[self.doc_entry[self.doc_is_answer]] = similar[self.doc_is_answer]
        candidates = set(self._top(per_entry)) | set(self._top(grams_phrasing))
        if semantic is not None:
            candidates |= set(self._top(np.maximum(semantic, 0.0)))
        if not candidates:
            return [], tokens
        best = float(per_entry.max()) or 1.0
        ranked = []
        for position in candidates:
            confidence = self.confidence(position, tokens)
            rank = (
                confidence
                + RANK_BM25_WEIGHT * float(per_entry[position]) / best
                + RANK_GRAMS_WEIGHT * float(grams_phrasing[position])
                + RANK_GRAMS_ANSWER_WEIGHT * float(grams_answer[position])
            )
            if semantic is not None:
                similarity = float(semantic[position])
                confidence = max(confidence, semantic_confidence(similarity))
                rank += RANK_SEMANTIC_WEIGHT * similarity
            ranked.append((rank, position, confidence))
        ranked.sort(reverse=True)
        return [(position, confidence) for _, position, confidence in ranked[:limit]], tokens

    def _per_entry(self, doc_scores: np.ndarray) -> np.ndarray:
        """Each entry's best phrasing's score."""
        # An entry's documents are consecutive (phrasings, then the answer), so a segmented max.
        masked = np.where(self.doc_is_answer, 0.0, doc_scores)
        return np.asarray(np.maximum.reduceat(masked, self.entry_start), dtype=np.float64)

    @staticmethod
    def _top(per_entry: np.ndarray) -> list[int]:
        count = min(CANDIDATES, int(np.count_nonzero(per_entry)))
        if count == 0:
            return []
        return [int(i) for i in np.argpartition(-per_entry, count - 1)[:count]]

    def confidence(self, position: int, tokens: Sequence[str]) -> float:
        wanted = set(tokens)
        total = sum(self._weight(t) for t in wanted)
        if total <= 0:
            return 0.0
        docs = self.docs_of_entry[position]
        phrasing_docs = [d for d in docs if not self.doc_is_answer[d]]
        covered_by_phrasings: set[str] = set().union(*(self.doc_tokens[d] & wanted for d in phrasing_docs))
        covered_by_answer = (self.doc_tokens[docs[-1]] & wanted) - covered_by_phrasings
        question_share = (
            sum(self._weight(t) for t in covered_by_phrasings)
            + ANSWER_WEIGHT * sum(self._weight(t) for t in covered_by_answer)
        ) / total
        best_phrasing = 0.0
        for d in phrasing_docs:
            own = self.doc_tokens[d]
            weight = sum(self._weight(t) for t in own)
            if weight > 0:
                best_phrasing = max(best_phrasing, sum(self._weight(t) for t in own & wanted) / weight)
        blend = QUESTION_COVERAGE_WEIGHT * question_share + (1 - QUESTION_COVERAGE_WEIGHT) * best_phrasing
        return round(min(max(blend, 0.0), 1.0), 4)


@dataclass
class WorkspaceIndex:
    version: tuple[int, str]
    languages: dict[str, LanguageIndex]

    @classmethod
    def build(
        cls, version: tuple[int, str], entries: Sequence[KnowledgeEntry], synonyms: Sequence[tuple[str, Sequence[str]]]
    ) -> "WorkspaceIndex":
        languages = {
            language: LanguageIndex.build(
                language,
                [e for e in entries if e.language == language and e.active],
                [terms for lang, terms in synonyms if lang == language],
            )
            for language in LANGUAGES
        }
        return cls(version, languages)

    def _semantic(self, semantic: Semantic | None, language: str) -> np.ndarray | None:
        if semantic is None or semantic.version != self.version:
            return None  # computed for another build of the index: its positions mean nothing here
        return semantic.by_language.get(language)

    def answer(
        self,
        question: str,
        language: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        semantic: Semantic | None = None,
    ) -> Answer:
        """The asked language first; the other one is tried when it does not answer (a customer
        writing in English to a Spanish channel)."""
        order = [language, *(lang for lang in LANGUAGES if lang != language)] if language else list(LANGUAGES)
        best: Answer | None = None
        asked_anything = False
        for lang in order:
            index = self.languages[lang]
            ranked, tokens = index.search(question, limit=1, semantic=self._semantic(semantic, lang))
            asked_anything = asked_anything or bool(tokens)
            if not ranked:
                continue
            position, confidence = ranked[0]
            entry = index.entries[position]
            candidate = Answer(
                answer=entry.answer,
                entry_id=entry.id,
                confidence=confidence,
                handoff=confidence < threshold,
                reason="matched" if confidence >= threshold else "low_confidence",
                buttons=entry.buttons,
                language=lang,
            )
            if best is None or candidate.confidence > best.confidence:
                best = candidate
            if not candidate.handoff:
                break
        if best is None:
            if not any(index.entries for index in self.languages.values()):
                return Answer(None, None, 0.0, True, "no_knowledge")
            return Answer(None, None, 0.0, True, "no_match" if asked_anything else "empty_question")
        if best.handoff:
            # A hand-off says what was found (for the agent's note) but never answers.
            return Answer(None, best.entry_id, best.confidence, True, "low_confidence", language=best.language)
        return best

    def suggest(
        self, question: str, limit: int = 3, semantic: Semantic | None = None
    ) -> list[tuple[IndexedEntry, float, str]]:
        """The best entries in either language for an agent to choose from, most confident first
        (no threshold: the agent judges)."""
        found: list[tuple[IndexedEntry, float, str]] = []
        for lang in LANGUAGES:
            index = self.languages[lang]
            ranked, _tokens = index.search(question, limit=limit, semantic=self._semantic(semantic, lang))
            found.extend((index.entries[position], confidence, lang) for position, confidence in ranked)
        found.sort(key=lambda item: -item[1])
        return found[:limit]


_cache: OrderedDict[int, WorkspaceIndex] = OrderedDict()
_cache_lock = threading.Lock()
_build_locks: dict[int, threading.Lock] = {}


def index_for(session: Session, workspace_id: int) -> WorkspaceIndex:
    """The workspace's index at its current knowledge version, built at most once per change per
    process (concurrent questions wait for the one build)."""
    current = repository.version(session, workspace_id)
    with _cache_lock:
        cached = _cache.get(workspace_id)
        if cached is not None and cached.version == current:
            _cache.move_to_end(workspace_id)
            return cached
        build_lock = _build_locks.setdefault(workspace_id, threading.Lock())
    with build_lock:
        with _cache_lock:
            cached = _cache.get(workspace_id)
            if cached is not None and cached.version == current:
                return cached
        entries = repository.all_entries(session, workspace_id, active_only=True)
        synonyms = [(s.language, list(s.terms or [])) for s in repository.synonyms(session, workspace_id)]
        built = WorkspaceIndex.build(current, entries, synonyms)
        with _cache_lock:
            _cache[workspace_id] = built
            _cache.move_to_end(workspace_id)
            while len(_cache) > CACHE_WORKSPACES:
                _cache.popitem(last=False)
        return built


def answer(
    session: Session,
    workspace_id: int,
    question: str,
    language: str | None = None,
    threshold: float | None = None,
    semantic: Semantic | None = None,
) -> Answer:
    """What the assistant answers to `question` from the workspace's active entries; no side effects."""
    index = index_for(session, workspace_id)
    return index.answer(question, language, DEFAULT_THRESHOLD if threshold is None else threshold, semantic)


def suggestions(
    session: Session, workspace_id: int, question: str, limit: int = 3, semantic: Semantic | None = None
) -> list[Answer]:
    """The top `limit` entries for `question` (the inbox's suggested replies); no side effects."""
    index = index_for(session, workspace_id)
    return [
        Answer(entry.answer, entry.id, confidence, False, "suggested", entry.buttons, lang)
        for entry, confidence, lang in index.suggest(question[:MAX_QUESTION], limit, semantic)
    ]
