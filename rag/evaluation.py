"""Offline evaluation: how well Lore finds and answers, on questions with known answers.

The question format is the one in `shared/eval/README.md`: one JSON object a line with
`id`, `lang` (en or zh), `question`, `answers` (gold strings), `doc` (the file name
holding the answer) and `context` (the gold paragraph); `unanswerable: true` marks a
question the documents do not answer.

Retrieval is scored on answerable questions: a retrieved chunk is an *answer hit*
when it comes from the gold document and contains a gold answer, and a *doc hit*
when it comes from the gold document. Answers are scored SQuAD-style: exact match and
F1 over words for English, over characters for Chinese (as CMRC 2018 does), taking
the best over the gold variants. Answers are written in sentences, so the metric that
fits them best is *contains gold*: the answer holds a gold answer, normalised as for F1.
An answer is scored in its own language: on cross-language sets (`xquad-cross`) the
gold answers in the question's language (`question_language_answers`) count beside
the document's. The *oracle* run gives the model the gold paragraph instead of
retrieved passages, so `F1 / oracle F1` isolates what retrieval costs.

Every question belongs to one of two halves, `calibrate` and `report` (its `split`,
else a hash of its id), so that thresholds are chosen on one half and the figures
reported on the other.
"""

from __future__ import annotations

import json
import logging
import random
import re
import statistics
import time
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.answering.answerer import Answerer
from rag.errors import InvalidInput
from rag.retrieval.language import language_of
from rag.retrieval.retriever import Mode, Retriever
from rag.types import Answer, Chunk, DoneEvent, Passage, TokenEvent

HIT_KS = (1, 3, 5, 10)


@dataclass(frozen=True)
class Question:
    id: str
    lang: str
    question: str
    answers: tuple[str, ...]
    doc: str | None
    context: str = ""
    unanswerable: bool = False
    # The gold answers in the question's language, where it differs from the document's.
    question_language_answers: tuple[str, ...] = ()
    split: str = ""

    @property
    def half(self) -> str:
        """`calibrate` or `report`: the question's own `split`, else a stable hash of its id."""
        if self.split in HALVES:
            return self.split
        return HALVES[zlib.crc32(self.id.encode("utf-8")) % 2]

    def gold(self) -> tuple[str, ...]:
        """Every gold answer, in the document's language and in the question's."""
        return self.answers + self.question_language_answers


log = logging.getLogger(__name__)

HALVES = ("calibrate", "report")


def load_questions(
    path: Path,
    limit: int | None = None,
    *,
    sample: int | None = None,
    half: str | None = None,
) -> list[Question]:
    """Questions from a JSON-lines file; a malformed line is an error naming its number.

    `half` keeps one half (`calibrate` or `report`, see `Question.half`) before the rest;
    `limit` keeps the first N; `sample` a seeded random N (the same N on every run), in
    file order, which spreads a small run over all the documents.
    """
    if half is not None and half not in HALVES:
        raise InvalidInput(f"The half must be one of {', '.join(HALVES)}, not {half!r}.")
    questions = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInput(f"Can't read the questions file {path}: {exc.strerror}.") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            unanswerable = bool(raw.get("unanswerable", False))
            question = Question(
                id=str(raw["id"]),
                lang=str(raw.get("lang", "en")),
                question=str(raw["question"]),
                answers=tuple(str(a) for a in raw.get("answers") or ()),
                doc=None if unanswerable else str(raw["doc"]),
                context=str(raw.get("context") or ""),
                unanswerable=unanswerable,
                question_language_answers=tuple(
                    str(a) for a in raw.get("question_language_answers") or ()
                ),
                split=str(raw.get("split") or ""),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"{path.name}, line {number}: not a question ({exc}).") from exc
        if not question.unanswerable and not question.answers:
            raise InvalidInput(f"{path.name}, line {number}: an answerable question needs answers.")
        if not question.question.strip():
            # CMRC 2018's trial set has two; nobody can ask them, so they are not scored.
            log.warning("%s, line %d: the question is empty; skipped.", path.name, number)
            continue
        if half is not None and question.half != half:
            continue
        questions.append(question)
        if limit is not None and len(questions) >= limit:
            break
    if sample is not None and sample < len(questions):
        keep = set(random.Random(0).sample(range(len(questions)), sample))  # noqa: S311
        questions = [q for i, q in enumerate(questions) if i in keep]
    return questions


# -- matching and scoring ---------------------------------------------------

_CITATION_MARK = re.compile(r"\[\d+\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _squash(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether `text` holds one of `answers`, ignoring case, width and spacing."""
    haystack = _squash(text)
    bare = haystack.replace(" ", "")
    for answer in answers:
        needle = _squash(answer)
        if needle and (needle in haystack or needle.replace(" ", "") in bare):
            return True
    return False


def _units(text: str, lang: str) -> list[str]:
    """Scoring units: SQuAD-normalised words for English, characters for Chinese."""
    text = _CITATION_MARK.sub(" ", unicodedata.normalize("NFKC", text).lower())
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    if lang == "zh":
        return [c for c in text if not c.isspace()]
    return _ARTICLES.sub(" ", text).split()


def exact_match(prediction: str, answers: Sequence[str], lang: str) -> float:
    mine = _units(prediction, lang)
    return float(any(mine == _units(a, lang) for a in answers))


def f1_score(prediction: str, answers: Sequence[str], lang: str) -> float:
    """The best unit-overlap F1 between `prediction` and any gold answer."""
    mine = _units(prediction, lang)
    best = 0.0
    for answer in answers:
        gold = _units(answer, lang)
        common = sum((Counter(mine) & Counter(gold)).values())
        if common:
            precision, recall = common / len(mine), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- retrieval --------------------------------------------------------------


@dataclass
class RetrievalRow:
    """One question's retrieval: the 1-based rank of the first answer and doc hit (0: none)."""

    question: Question
    answer_rank: int
    doc_rank: int
    seconds: float


def hit_rank(passages: Sequence[Passage], question: Question, need_answer: bool) -> int:
    """The 1-based rank of the first gold-document passage (holding an answer if asked), or 0."""
    for rank, passage in enumerate(passages, start=1):
        if Path(passage.chunk.source).name != question.doc:
            continue
        if not need_answer or contains_answer(passage.chunk.text, question.answers):
            return rank
    return 0


def run_retrieval(
    retriever: Retriever,
    questions: Sequence[Question],
    collection: str,
    k: int,
    mode: Mode | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RetrievalRow]:
    rows = []
    answerable = [q for q in questions if not q.unanswerable]
    for done, question in enumerate(answerable, start=1):
        started = time.perf_counter()
        passages = retriever.search(question.question, collection, k, mode=mode)
        seconds = time.perf_counter() - started
        rows.append(
            RetrievalRow(
                question,
                hit_rank(passages, question, need_answer=True),
                hit_rank(passages, question, need_answer=False),
                seconds,
            )
        )
        if progress is not None:
            progress(done, len(answerable))
    return rows


def retrieval_metrics(rows: Sequence[RetrievalRow], k: int) -> dict[str, float]:
    count = len(rows) or 1
    metrics: dict[str, float] = {"questions": float(len(rows))}
    for cut in (c for c in HIT_KS if c <= k):
        metrics[f"answer_hit@{cut}"] = sum(0 < r.answer_rank <= cut for r in rows) / count
    for cut in (c for c in HIT_KS if c <= k):
        metrics[f"doc_hit@{cut}"] = sum(0 < r.doc_rank <= cut for r in rows) / count
    metrics["mrr@10"] = sum(1 / r.answer_rank for r in rows if 0 < r.answer_rank <= 10) / count
    latencies = [r.seconds * 1000 for r in rows]
    metrics["latency_p50_ms"] = _percentile(latencies, 0.5)
    metrics["latency_p95_ms"] = _percentile(latencies, 0.95)
    return metrics


# -- answers ----------------------------------------------------------------


@dataclass
class AnswerRow:
    question: Question
    text: str
    declined: bool
    cites_gold: bool
    ttft_s: float
    tokens_per_s: float
    oracle_text: str = ""
    oracle_declined: bool = False
    declined_by: str = ""  # which step declined (Answer.declined_by)


def _timed_answer(
    events: Iterable[Any], count_tokens: Callable[[str], int]
) -> tuple[Answer, float, float]:
    """Drain an answer stream: the answer, time to first token, tokens/s."""
    started = time.perf_counter()
    first: float | None = None
    for event in events:
        if isinstance(event, TokenEvent) and first is None:
            first = time.perf_counter()
        if isinstance(event, DoneEvent):
            answer = event.answer
            ended = time.perf_counter()
            first = first or ended
            decode = ended - first
            tokens = count_tokens(answer.text) if answer.text else 0
            rate = tokens / decode if decode > 0 else 0.0
            return answer, first - started, rate
    raise RuntimeError("answer stream ended without a result")  # pragma: no cover


def run_answers(
    answerer: Answerer,
    count_tokens: Callable[[str], int],
    questions: Sequence[Question],
    collection: str,
    progress: Callable[[int, int], None] | None = None,
) -> list[AnswerRow]:
    rows = []
    for done, question in enumerate(questions, start=1):
        answer, ttft, rate = _timed_answer(
            answerer.stream(question.question, collection), count_tokens
        )
        cites_gold = any(Path(c.source).name == question.doc for c in answer.citations)
        row = AnswerRow(
            question, answer.text, answer.declined, cites_gold, ttft, rate,
            declined_by=answer.declined_by,
        )  # fmt: skip
        if not question.unanswerable and question.context:
            gold = Passage(_gold_chunk(question), score=1.0)
            oracle, *_ = _timed_answer(
                answerer.stream_with(question.question, [gold]), count_tokens
            )
            row.oracle_text, row.oracle_declined = oracle.text, oracle.declined
        rows.append(row)
        if progress is not None:
            progress(done, len(questions))
    return rows


def _gold_chunk(question: Question) -> Chunk:
    return Chunk(
        id=f"gold-{question.id}",
        doc_id="gold",
        text=question.context,
        source=question.doc or "",
        title=question.doc or "",
        chunk_index=0,
        content_hash="",
    )


def contains_gold(answer: str, answers: Iterable[str]) -> bool:
    """Whether an answer holds a gold answer; its citation markers don't count as text."""
    return contains_answer(_CITATION_MARK.sub(" ", answer), answers)


def answer_scores(row: AnswerRow) -> dict[str, float]:
    """One answerable question's scores, each answer scored in its own language."""
    gold = row.question.gold()

    def scored(prefix: str, text: str, declined: bool) -> dict[str, float]:
        lang = language_of(text)
        return {
            f"{prefix}exact_match": exact_match(text, gold, lang),
            f"{prefix}f1": f1_score(text, gold, lang),
            f"{prefix}contains_gold": float(not declined and contains_gold(text, gold)),
        }

    return {
        **scored("", row.text, row.declined),
        **scored("oracle_", row.oracle_text, row.oracle_declined),
        "cites_gold_doc": float(row.cites_gold),
        "declined": float(row.declined),
        # Which step declined an answerable question (false refusals, by cause).
        **{f"false_refusal_by_{step}": float(row.declined_by == step) for step in DECLINING_STEPS},
    }


# The steps that can decline an answer (Answer.declined_by).
DECLINING_STEPS = ("search", "model", "unstated", "support")


def answer_metrics(rows: Sequence[AnswerRow]) -> dict[str, float]:
    answerable = [r for r in rows if not r.question.unanswerable]
    unanswerable = [r for r in rows if r.question.unanswerable]
    metrics: dict[str, float] = {
        "answered_questions": float(len(answerable)),
        "unanswerable_questions": float(len(unanswerable)),
    }
    if answerable:
        scores = [answer_scores(r) for r in answerable]
        for name in scores[0]:
            metrics[name] = sum(s[name] for s in scores) / len(scores)
        metrics["false_refusal_rate"] = metrics.pop("declined")
        for name in ("f1", "contains_gold"):
            oracle = metrics[f"oracle_{name}"]
            metrics[f"{name}_share_of_oracle"] = metrics[name] / oracle if oracle else 0.0
    if unanswerable:
        metrics["refusal_rate"] = sum(r.declined for r in unanswerable) / len(unanswerable)
    generated = [r for r in rows if not r.declined]
    metrics["ttft_p50_s"] = statistics.median([r.ttft_s for r in generated]) if generated else 0.0
    metrics["tokens_per_s"] = (
        statistics.median([r.tokens_per_s for r in generated]) if generated else 0.0
    )
    return metrics


# -- the report -------------------------------------------------------------


@dataclass
class EvalReport:
    """Metrics by language ("all" too) for each retrieval mode run, and for answers."""

    collection: str
    k: int
    retrieval: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    answers: dict[str, dict[str, float]] = field(default_factory=dict)
    # Each question's own scores, {"id/lang": {"hybrid:mrr@10": 1.0, ...}}, which
    # `compare` pairs across two runs; not part of the JSON report.
    per_question: dict[str, dict[str, float]] = field(default_factory=dict)
    # Each answer as given, for reading why a question was missed; not in the JSON report.
    answer_rows: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        report = asdict(self)
        del report["per_question"], report["answer_rows"]
        return report

    def record(self, question: Question, scores: dict[str, float]) -> None:
        # XQuAD's English and Chinese versions of a question share an id.
        self.per_question.setdefault(f"{question.id}/{question.lang}", {}).update(scores)


def _by_language(
    items: Sequence[Any], metrics: Callable[[Sequence[Any]], dict[str, float]]
) -> dict[str, dict[str, float]]:
    languages = sorted({item.question.lang for item in items})
    result = {lang: metrics([i for i in items if i.question.lang == lang]) for lang in languages}
    if len(languages) > 1:
        result["all"] = metrics(items)
    return result


def _step(
    progress: Callable[[str, int, int], None] | None, stage: str
) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def evaluate(
    retriever: Retriever,
    questions: Sequence[Question],
    collection: str,
    *,
    k: int = 10,
    modes: Sequence[Mode] = ("hybrid",),
    answerer: Answerer | None = None,
    count_tokens: Callable[[str], int] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalReport:
    """Run the questions against `collection` (already ingested) and gather the metrics."""
    report = EvalReport(collection, k)
    for mode in modes:
        step = _step(progress, f"retrieval ({mode})")
        rows = run_retrieval(retriever, questions, collection, k, mode, step)
        report.retrieval[mode] = _by_language(rows, lambda r: retrieval_metrics(r, k))
        for row in rows:
            rank = row.answer_rank
            report.record(
                row.question,
                {
                    f"{mode}:answer_hit@5": float(0 < rank <= 5),
                    f"{mode}:mrr@10": 1 / rank if 0 < rank <= 10 else 0.0,
                    f"{mode}:latency_ms": row.seconds * 1000,
                },
            )
    if answerer is not None and count_tokens is not None:
        answer_rows = run_answers(
            answerer,
            count_tokens,
            questions,
            collection,
            _step(progress, "answers"),
        )
        report.answers = _by_language(answer_rows, answer_metrics)
        report.answer_rows = [_row_json(r) for r in answer_rows]
        for answer in answer_rows:
            if answer.question.unanswerable:
                report.record(answer.question, {"refused": float(answer.declined)})
            else:
                scores = answer_scores(answer)
                report.record(answer.question, {"answered": 1.0 - scores.pop("declined"), **scores})
            if not answer.declined:
                report.record(answer.question, {"ttft_s": answer.ttft_s})
    return report


def _row_json(row: AnswerRow) -> dict[str, Any]:
    question = row.question
    gold = question.gold()
    return {
        "id": question.id,
        "lang": question.lang,
        "question": question.question,
        "unanswerable": question.unanswerable,
        "gold": list(gold),
        "answer": row.text,
        "declined_by": row.declined_by,
        "contains_gold": bool(gold) and not row.declined and contains_gold(row.text, gold),
        "oracle_answer": row.oracle_text,
        "cites_gold_doc": row.cites_gold,
    }


# -- comparing two configurations -------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One metric of two runs on the same questions: B - A, with a 95 % bootstrap interval."""

    metric: str
    questions: int
    mean_a: float
    mean_b: float
    low: float
    high: float

    @property
    def difference(self) -> float:
        return self.mean_b - self.mean_a


def compare(a: EvalReport, b: EvalReport, *, resamples: int = 2000) -> list[Difference]:
    """Each metric both runs scored, paired question by question (B - A).

    The interval is a percentile bootstrap over questions (seeded, so a rerun prints the
    same): when it excludes 0, the difference is unlikely to be the questions' luck.
    """
    import numpy as np

    names = sorted({name for scores in a.per_question.values() for name in scores})
    generator = np.random.default_rng(0)
    differences = []
    for name in names:
        pairs = [
            (scores[name], b.per_question[qid][name])
            for qid, scores in a.per_question.items()
            if name in scores and name in b.per_question.get(qid, {})
        ]
        if not pairs:
            continue
        values = np.array(pairs, dtype=np.float64)
        delta = values[:, 1] - values[:, 0]
        picks = generator.integers(0, len(delta), size=(resamples, len(delta)))
        means = delta[picks].mean(axis=1)
        differences.append(
            Difference(
                name,
                len(pairs),
                float(values[:, 0].mean()),
                float(values[:, 1].mean()),
                float(np.percentile(means, 2.5)),
                float(np.percentile(means, 97.5)),
            )
        )
    return differences


def format_comparison(differences: Sequence[Difference], names: tuple[str, str]) -> str:
    """The paired differences as a Markdown table."""
    lines = [
        f"| metric | questions | {names[0]} | {names[1]} | difference | 95 % interval |",
        "|---|---|---|---|---|---|",
    ]
    for d in differences:
        lines.append(
            f"| {d.metric} | {d.questions} | {d.mean_a:.3f} | {d.mean_b:.3f} | "
            f"{d.difference:+.3f} | {d.low:+.3f} … {d.high:+.3f} |"
        )
    return "\n".join(lines)


def format_table(report: EvalReport) -> str:
    """The report as Markdown tables: one row per mode and language."""
    lines = []
    if report.retrieval:
        first = next(iter(report.retrieval.values()))
        columns = list(next(iter(first.values())))
        lines.append("| mode | lang | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 2) + "|")
        for mode, languages in report.retrieval.items():
            for lang, metrics in languages.items():
                cells = [_cell(name, metrics[name]) for name in columns]
                lines.append(f"| {mode} | {lang} | " + " | ".join(cells) + " |")
    if report.answers:
        columns = sorted({name for metrics in report.answers.values() for name in metrics})
        lines += ["", "| lang | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for lang, metrics in report.answers.items():
            cells = [_cell(name, metrics[name]) if name in metrics else "" for name in columns]
            lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(name: str, value: float) -> str:
    if name.endswith("questions"):
        return f"{value:.0f}"
    if name.endswith(("_ms", "_s", "per_s")):
        return f"{value:.1f}"
    return f"{value:.3f}"
