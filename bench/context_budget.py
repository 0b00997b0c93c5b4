"""Answer quality against time to first token for several context budgets.

Prompt processing dominates time to first token on a CPU, so every passage put in the
prompt costs latency, and too few passages miss the answer. For each budget this
prints, over the same answerable questions:

- how often a gold answer is in the passages that fit (the most F1 can reach), and the
  prompt's size in tokens; this part needs no chat model and runs in seconds;
- with `--answers`: F1 of the generated answers, time to first token, and F1 per
  second of it (the evidence gate off, so that every budget answers every question).

    LORE_DATA_DIR=/tmp/eval/data python bench/context_budget.py \\
        ../shared/eval/xquad/questions.jsonl --collection eval-xquad-docs --sample 200

The collection must already hold the documents (`lore eval` ingests them).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rag.answering import prompts
from rag.answering.answerer import Answerer, AnswerLimits
from rag.config import Settings
from rag.container import Lore
from rag.evaluation import contains_answer, f1_score, load_questions, run_answers


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--budgets", default="300,600,900,1200,2000")
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--answers", type=int, default=0, help="answer this many (0: none)")
    args = parser.parse_args(argv)

    lore = Lore(Settings(min_evidence=0.0))
    retriever, generator = lore.retriever, lore.generator
    questions = [q for q in load_questions(args.questions, sample=args.sample) if q.answers]
    found = {q.id: retriever.search(q.question, args.collection, args.top_k) for q in questions}
    budgets = [int(b) for b in args.budgets.split(",")]
    print(f"{len(questions)} questions, top_k {args.top_k}")
    print(f"{'budget':>7} {'sources':>8} {'prompt tokens':>14} {'answer in prompt':>17}")
    for budget in budgets:
        answerer = Answerer(retriever, generator, AnswerLimits(context_tokens=budget))
        shown, tokens, holds = [], [], []
        for q in questions:
            sources = answerer.fit_budget(q.question, found[q.id])
            messages = prompts.build_messages(q.question, sources)
            shown.append(len(sources))
            tokens.append(generator.count_tokens("".join(m["content"] for m in messages)))
            holds.append(any(contains_answer(s.text, q.answers) for s in sources))
        print(
            f"{budget:>7} {statistics.mean(shown):8.1f} {statistics.mean(tokens):14.0f} "
            f"{sum(holds) / len(holds):17.3f}",
            flush=True,
        )
    if not args.answers:
        return
    # No gold paragraph: the evaluation's oracle run is not needed here.
    sample = [replace(q, context="") for q in questions[: args.answers]]
    print(f"\n{len(sample)} answers per budget")
    print(f"{'budget':>7} {'F1':>6} {'TTFT p50 s':>11} {'F1 per s':>9}")
    for budget in budgets:
        limits = AnswerLimits(top_k=args.top_k, context_tokens=budget)
        rows = run_answers(
            Answerer(retriever, generator, limits), generator.count_tokens, sample, args.collection
        )
        f1 = statistics.mean(f1_score(r.text, r.question.answers, r.question.lang) for r in rows)
        ttft = statistics.median(r.ttft_s for r in rows)
        print(f"{budget:>7} {f1:6.3f} {ttft:11.2f} {f1 / ttft:9.3f}", flush=True)


if __name__ == "__main__":
    main()
