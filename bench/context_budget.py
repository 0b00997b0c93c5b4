"""Answer quality against time to first token for several context budgets.

Prompt processing dominates time to first token on a CPU, so every passage put in the
prompt costs latency, and too few passages miss the answer. This runs the same
answerable questions with each budget (the evidence gate off, so that every budget
answers every question) and prints F1, time to first token and F1 per second.

    LORE_DATA_DIR=/tmp/eval/data python bench/context_budget.py \\
        ../shared/eval/xquad/questions.jsonl --collection eval-xquad-docs --sample 40

The collection must already hold the documents (`lore eval` ingests them).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rag.answering import Answerer, AnswerLimits
from rag.config import Settings
from rag.container import Lore
from rag.evaluation import f1_score, load_questions, run_answers


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--budgets", default="300,600,1200,2000")
    parser.add_argument("--top-k", type=int, default=8)
    args = parser.parse_args(argv)

    lore = Lore(Settings(min_evidence=0.0))
    retriever, generator = lore.retriever, lore.generator
    questions = [
        q for q in load_questions(args.questions, sample=args.sample) if not q.unanswerable
    ]
    # No gold paragraph: the oracle run is not needed here.
    questions = [replace(q, context="") for q in questions]
    print(f"{len(questions)} questions, top_k {args.top_k}")
    print(f"{'budget':>7} {'sources':>8} {'F1':>6} {'TTFT p50 s':>11} {'F1 per s':>9}")
    for budget in (int(b) for b in args.budgets.split(",")):
        k = args.top_k
        answerer = Answerer(
            retriever, generator, AnswerLimits(top_k=args.top_k, context_tokens=budget)
        )
        rows = run_answers(answerer, generator.count_tokens, questions, args.collection)
        f1 = statistics.mean(f1_score(r.text, r.question.answers, r.question.lang) for r in rows)
        ttft = statistics.median(r.ttft_s for r in rows)
        shown = statistics.mean(
            len(answerer.fit_budget(q.question, retriever.search(q.question, args.collection, k)))
            for q in questions
        )
        print(f"{budget:>7} {shown:8.1f} {f1:6.3f} {ttft:11.2f} {f1 / ttft:9.3f}", flush=True)


if __name__ == "__main__":
    main()
