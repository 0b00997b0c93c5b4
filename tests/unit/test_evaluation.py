from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.batch import BatchOptions, run_batch
from rag.answering.prompts import REFUSAL_EN
from rag.container import Lore
from rag.errors import InvalidInput
from rag.evaluation import (
    AnswerRow,
    EvalReport,
    Question,
    answer_metrics,
    answer_scores,
    compare,
    contains_answer,
    contains_gold,
    evaluate,
    exact_match,
    f1_score,
    format_comparison,
    format_table,
    load_questions,
)
from tests.fakes import ScriptedGenerator

pytestmark = pytest.mark.unit


def test_scores_use_words_for_english_and_characters_for_chinese() -> None:
    assert exact_match("The Denver Broncos.", ["Denver Broncos"], "en") == 1.0
    assert f1_score("Denver won [1]", ["Denver Broncos"], "en") == pytest.approx(0.5)
    assert f1_score("nothing alike", ["Denver Broncos"], "en") == 0.0
    assert exact_match("两万公里。", ["两万公里"], "zh") == 1.0
    # 4 shared characters of 5 predicted and 4 gold: P = 0.8, R = 1.0.
    assert f1_score("约两万公里", ["两万公里"], "zh") == pytest.approx(2 * 0.8 / 1.8)
    assert f1_score("x", ["两万公里", "x"], "zh") == 1.0  # the best gold variant counts


def test_answer_matching_ignores_case_width_and_spacing() -> None:
    assert contains_answer("The Panthers gave up just 308 points.", ["308"])
    assert contains_answer("DENVER  broncos won", ["Denver Broncos"])
    assert contains_answer("全长 两万 公里", ["两万公里"])
    assert contains_answer("ＡＢＣ１２３", ["abc123"])  # noqa: RUF001 (full-width on purpose)
    assert not contains_answer("Carolina Panthers", ["Denver"])


def test_question_files_are_checked_line_by_line(tmp_path: Path) -> None:
    good = {"id": "1", "lang": "en", "question": "Q?", "answers": ["a"], "doc": "d.md"}
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps(good)
        + "\n\n"
        + json.dumps({"id": "2", "question": "None?", "answers": [], "unanswerable": True})
        + "\n"
    )
    loaded = load_questions(path)
    assert [q.id for q in loaded] == ["1", "2"]
    assert loaded[1].unanswerable
    assert loaded[1].doc is None
    assert len(load_questions(path, limit=1)) == 1
    assert load_questions(path, sample=1) == load_questions(path, sample=1)
    assert len(load_questions(path, sample=1)) == 1
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(InvalidInput, match="line 2"):
        load_questions(path)
    path.write_text(json.dumps({**good, "answers": []}) + "\n")
    with pytest.raises(InvalidInput, match="needs answers"):
        load_questions(path)
    with pytest.raises(InvalidInput, match="Can't read"):
        load_questions(tmp_path / "missing.jsonl")
    # A question with no text (CMRC 2018's trial set has two) can't be asked: skipped.
    path.write_text(json.dumps({**good, "question": " "}) + "\n" + json.dumps(good) + "\n")
    assert [q.question for q in load_questions(path)] == ["Q?"]


def _eval_set(root: Path) -> tuple[Path, Path]:
    docs = root / "docs"
    docs.mkdir()
    (docs / "en-ports.md").write_text(
        "# Ports\n\nThe Lore server listens on port 8000 by default.\n", encoding="utf-8"
    )
    (docs / "zh-wall.md").write_text(
        "# 长城\n\n长城是中国古代的军事防御工程，总长度超过两万公里。\n", encoding="utf-8"
    )
    questions = [
        {"id": "e1", "lang": "en", "question": "Which port does the Lore server listen on?",
         "answers": ["8000"], "doc": "en-ports.md",
         "context": "The Lore server listens on port 8000 by default."},
        {"id": "z1", "lang": "zh", "question": "长城的总长度是多少？", "answers": ["两万公里"],
         "doc": "zh-wall.md", "context": "长城是中国古代的军事防御工程，总长度超过两万公里。"},
        {"id": "u1", "lang": "en", "question": "What colour is the moon's far side?",
         "answers": [], "unanswerable": True},
    ]  # fmt: skip
    path = root / "questions.jsonl"
    path.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in questions))
    return docs, path


def test_evaluate_reports_retrieval_and_answers_by_language(
    lore: Lore, generator: ScriptedGenerator, tmp_path: Path
) -> None:
    docs, path = _eval_set(tmp_path)
    ingested = run_batch(lore, [docs], "eval", BatchOptions(workers=1)).as_json()
    assert (ingested["added"], ingested["failed"]) == (2, 0), ingested["failures"]
    generator.reply = "8000"
    report = evaluate(
        lore.retriever,
        load_questions(path),
        "eval",
        k=5,
        modes=("hybrid", "dense", "keyword"),
        answerer=lore.answerer,
        count_tokens=generator.count_tokens,
    )
    for mode in ("hybrid", "dense", "keyword"):
        assert set(report.retrieval[mode]) == {"en", "zh", "all"}
        overall = report.retrieval[mode]["all"]
        assert overall["questions"] == 2  # unanswerable questions are not retrieval questions
        assert overall["answer_hit@1"] == 1.0
        assert overall["mrr@10"] == 1.0
        assert overall["latency_p95_ms"] > 0
    english = report.answers["en"]
    assert english["exact_match"] == 1.0
    assert english["oracle_f1"] == 1.0
    assert english["f1_share_of_oracle"] == 1.0
    assert english["cites_gold_doc"] == 1.0
    assert report.answers["zh"]["f1"] == 0.0
    # The scripted model never declines, so the unanswerable question is answered.
    assert english["refusal_rate"] == 0.0
    table = format_table(report)
    assert "| keyword | zh |" in table
    assert "answer_hit@5" in table
    assert json.dumps(report.as_json())
    assert english["false_refusal_by_model"] == 0.0
    assert [r["declined_by"] for r in report.answer_rows] == ["", "", ""]


def test_evaluate_says_which_step_declined_each_answer(
    lore: Lore, generator: ScriptedGenerator, tmp_path: Path
) -> None:
    docs, path = _eval_set(tmp_path)
    run_batch(lore, [docs], "eval", BatchOptions(workers=1))
    generator.reply = REFUSAL_EN
    report = evaluate(
        lore.retriever,
        load_questions(path),
        "eval",
        answerer=lore.answerer,
        count_tokens=generator.count_tokens,
    )
    english = report.answers["en"]
    assert english["false_refusal_rate"] == 1.0
    assert english["false_refusal_by_model"] == 1.0
    assert english["false_refusal_by_search"] == 0.0
    rows = {(r["id"], r["lang"]): r for r in report.answer_rows}
    assert all(r["declined_by"] == "model" for r in rows.values())
    assert not any(r["contains_gold"] for r in rows.values())
    assert "answer_rows" not in report.as_json()


def test_cli_refuses_an_unknown_mode_before_doing_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    docs, path = _eval_set(tmp_path)
    result = CliRunner().invoke(app, ["eval", str(path), "--docs", str(docs), "--mode", "bm25"])
    assert result.exit_code == 2
    assert "--mode must be one of hybrid, dense, keyword or all" in result.output
    assert not (tmp_path / "data").exists()


def test_cli_refuses_a_rows_file_it_cannot_write_before_doing_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    docs, path = _eval_set(tmp_path)
    base = ["eval", str(path), "--docs", str(docs)]
    nowhere = tmp_path / "no-such-folder" / "rows.jsonl"
    result = CliRunner().invoke(app, [*base, "--answers", "--rows", str(nowhere)])
    assert result.exit_code == 2
    assert "cannot write" in result.output
    result = CliRunner().invoke(app, [*base, "--rows", str(tmp_path / "rows.jsonl")])
    assert result.exit_code == 2
    assert "give --answers too" in result.output
    assert not (tmp_path / "data").exists()


def test_every_question_falls_in_one_stable_half(tmp_path: Path) -> None:
    lines = [
        {"id": f"q{i}", "lang": "en", "question": "Q?", "answers": ["a"], "doc": "d.md"}
        for i in range(40)
    ]
    lines[0]["split"] = "report"
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    calibrate = load_questions(path, half="calibrate")
    report = load_questions(path, half="report")
    assert {q.id for q in calibrate} | {q.id for q in report} == {f"q{i}" for i in range(40)}
    assert not {q.id for q in calibrate} & {q.id for q in report}
    assert 10 <= len(calibrate) <= 30  # a hash, not a fit: roughly half each
    assert "q0" in {q.id for q in report}  # an explicit split wins
    assert [q.id for q in load_questions(path, half="report")] == [q.id for q in report]
    with pytest.raises(InvalidInput, match="half"):
        load_questions(path, half="other")


def _row(question: Question, text: str, oracle: str = "", declined: bool = False) -> AnswerRow:
    return AnswerRow(question, text, declined, False, 1.0, 10.0, oracle_text=oracle)


def test_answers_are_scored_in_their_own_language() -> None:
    cross = Question(
        "x1", "en", "How many points did the Panthers give up?", ("308分",), "zh.md",
        question_language_answers=("308 points",),
    )  # fmt: skip
    scores = answer_scores(_row(cross, "The Panthers gave up 308 points [1].", "308 points."))
    assert scores["contains_gold"] == 1.0
    assert scores["oracle_exact_match"] == 1.0
    assert scores["f1"] > 0.4  # words of the English gold, not characters of the Chinese
    # Citation markers are not part of the text: "[1]" does not contain the answer "1".
    one = Question("x2", "en", "How many?", ("1",), "d.md")
    assert answer_scores(_row(one, "None of them [1]."))["contains_gold"] == 0.0
    assert answer_scores(_row(one, "Just 1 [1]."))["contains_gold"] == 1.0
    # A refusal never contains the answer, even if it happens to quote it.
    assert answer_scores(_row(one, "Not 1.", declined=True))["contains_gold"] == 0.0
    assert contains_gold("第308分 [2]", ["308分"])


def test_answer_metrics_report_contains_gold_beside_its_oracle() -> None:
    question = Question("x1", "en", "Which port?", ("8000",), "d.md", context="Port 8000.")
    rows = [_row(question, "Port 8000 [1].", "It is 8000."), _row(question, "No idea.", "8000")]
    metrics = answer_metrics(rows)
    assert metrics["contains_gold"] == 0.5
    assert metrics["oracle_contains_gold"] == 1.0
    assert metrics["contains_gold_share_of_oracle"] == 0.5


def test_compare_pairs_the_questions_of_two_runs() -> None:
    first, second = EvalReport("c", 5), EvalReport("c", 5)
    for number in range(50):
        question = Question(f"q{number}", "en", "Q?", ("a",), "d.md")
        first.record(question, {"hybrid:answer_hit@5": float(number % 2)})
        second.record(question, {"hybrid:answer_hit@5": 1.0})
    # The same id in another language is another question, not an overwrite.
    first.record(Question("q0", "zh", "问？", ("a",), "d.md"), {"hybrid:answer_hit@5": 1.0})
    [difference] = compare(first, second)
    assert difference.questions == 50
    assert difference.mean_a == 0.5
    assert difference.difference == 0.5
    assert 0.3 < difference.low < 0.5 < difference.high <= 0.7
    assert compare(first, second) == [difference]  # seeded: the same interval every run
    assert "+0.500" in format_comparison([difference], ("A", "B"))
    assert "per_question" not in first.as_json()
