from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import ingest_paths
from rag.components.hashing_embeddings import HashingEmbedder
from rag.config import Settings
from rag.container import Lore
from rag.errors import ModelMissing
from rag.retrieval.language import Language, language_of
from rag.retrieval.retriever import Retriever
from rag.retrieval.translation import ChatTranslator, clean_translation, translation_messages
from tests.fakes import ScriptedGenerator

pytestmark = pytest.mark.unit


@pytest.fixture
def translating(settings: Settings, generator: ScriptedGenerator) -> Lore:
    from rag.components.store import ChromaStore

    embedder = HashingEmbedder()
    store = ChromaStore.embedded(settings.chroma_dir, embedder.name)
    return Lore(
        settings.model_copy(update={"translate_questions": True}),
        embedder_override=embedder,
        store_override=store,
        generator_override=generator,
    )


def _chinese_docs(tmp_path: Path) -> Path:
    folder = tmp_path / "zh-docs"
    folder.mkdir()
    (folder / "wall.txt").write_text(
        "长城是中国古代的军事防御工程。长城的总长度超过两万公里。", encoding="utf-8"
    )
    (folder / "palace.txt").write_text("故宫位于北京，是明清两代的皇家宫殿。", encoding="utf-8")
    return folder


def test_language_is_chinese_only_when_ideographs_dominate() -> None:
    assert language_of("How long is the Great Wall?") == "en"
    assert language_of("长城有多长？") == "zh"
    assert language_of("NFL 的总部在哪里？") == "zh"  # a Latin name inside Chinese
    assert language_of("The word 长城 means long wall.") == "en"
    assert language_of("1234 !!") == "en"


def test_a_question_over_documents_in_the_other_language_is_searched_in_translation(
    translating: Lore, generator: ScriptedGenerator, tmp_path: Path
) -> None:
    ingest_paths(translating, [_chinese_docs(tmp_path)], "default")
    generator.replies = ["长城的总长度是多少？"]
    found = translating.retriever.retrieve("How long is the Great Wall?", "default", 2)
    [prompt] = generator.prompts
    assert prompt[-1] == {"role": "user", "content": "How long is the Great Wall?"}
    assert "Simplified Chinese" in prompt[0]["content"]
    assert found.query == "长城的总长度是多少？"
    assert found.passages[0].chunk.source.endswith("wall.txt")
    # The evidence is weighed on the translation, which shares the passage's words.
    assert found.evidence.coverage > 0.5


def test_a_question_in_the_documents_language_is_not_translated(
    translating: Lore, generator: ScriptedGenerator, docs: Path
) -> None:
    ingest_paths(translating, [docs], "default")
    found = translating.retriever.retrieve("Which port does the Lore server use?", "default", 2)
    assert generator.prompts == []
    assert found.query == "Which port does the Lore server use?"
    assert found.passages[0].chunk.source.endswith("ports.md")


def test_search_goes_on_without_translation_when_the_model_is_missing(
    translating: Lore, tmp_path: Path
) -> None:
    ingest_paths(translating, [_chinese_docs(tmp_path)], "default")

    class Missing:
        def translate(self, text: str, language: Language) -> str:
            raise ModelMissing("no chat model here")

    retriever = Retriever(
        translating.embedder,
        translating.store,
        translating.manifest,
        translating.keywords,
        translator=Missing(),
    )
    found = retriever.retrieve("How long is the Great Wall?", "default", 2)
    assert found.query == "How long is the Great Wall?"
    assert len(found.passages) == 2


def test_a_reply_that_is_no_translation_is_dropped() -> None:
    question = "How long is the Great Wall?"
    assert clean_translation("长城有多长？\n(This means...)", question, "zh") == "长城有多长？"
    assert clean_translation("“长城有多长？”", question, "zh") == "长城有多长？"
    # A mixed translation keeps the names it could not translate; it still helps.
    assert clean_translation("Great Wall有多长？", question, "zh") == "Great Wall有多长？"
    assert clean_translation(question, question, "zh") == ""  # nothing translated
    assert clean_translation("", question, "zh") == ""
    assert clean_translation("长" * 200, question, "zh") == ""  # rambling
    assert clean_translation("故宫有多大？", "故宫有多大？", "en") == ""
    assert clean_translation("How big is the palace?", "故宫有多大？", "en") == (
        "How big is the palace?"
    )


def test_the_translation_prompt_shows_worked_examples_in_the_right_direction() -> None:
    to_chinese = translation_messages("Where is it?", "zh")
    to_english = translation_messages("在哪里？", "en")
    assert to_chinese[-1]["content"] == "Where is it?"
    assert language_of(to_chinese[1]["content"]) == "en"
    assert language_of(to_chinese[2]["content"]) == "zh"
    assert language_of(to_english[1]["content"]) == "zh"
    assert language_of(to_english[2]["content"]) == "en"


def test_a_question_asked_again_is_not_translated_again() -> None:
    generator = ScriptedGenerator("长城有多长？")
    translator = ChatTranslator(lambda: generator)
    assert translator.translate("How long is the Great Wall?", "zh") == "长城有多长？"
    assert translator.translate("How long is the Great Wall?", "zh") == "长城有多长？"
    assert len(generator.prompts) == 1
    translator.CACHED = 1
    translator.translate("Where is the palace?", "zh")
    translator.translate("How long is the Great Wall?", "zh")  # pushed out, asked again
    assert len(generator.prompts) == 3


def test_a_translated_question_is_weighed_against_its_own_threshold(
    translating: Lore, generator: ScriptedGenerator, tmp_path: Path
) -> None:
    ingest_paths(translating, [_chinese_docs(tmp_path)], "default")
    generator.replies = ["长城的总长度是多少？"]
    retriever = translating.retriever
    retriever.min_evidence, retriever.min_evidence_translated = 2.5, 0.0
    assert retriever.retrieve("How long is the Great Wall?", "default", 2).passages
    retriever.min_evidence, retriever.min_evidence_translated = 0.0, 2.5
    found = retriever.retrieve("How long is the Great Wall?", "default", 2)  # cached
    assert found.passages == []
    assert found.nearest  # still shown with the refusal
    assert len(generator.prompts) == 1
    # Its passages are kept by their own floor too: a translation is less close to them.
    retriever.min_evidence_translated = 0.0
    retriever.min_score, retriever.min_score_translated = 0.0, 0.99
    assert retriever.retrieve("How long is the Great Wall?", "default", 2).passages == []
    retriever.min_score, retriever.min_score_translated = 0.99, 0.0
    assert retriever.retrieve("How long is the Great Wall?", "default", 2).passages


def test_a_translated_question_is_not_offered_the_refusal(
    translating: Lore, generator: ScriptedGenerator, tmp_path: Path
) -> None:
    # Offered it, the small model declined answerable questions asked across languages
    # (bench/answer_decisions.py); the thresholds decide for those instead.
    from rag.answering import prompts

    ingest_paths(translating, [_chinese_docs(tmp_path)], "default")
    generator.replies = ["长城的总长度是多少？", "It is over 20,000 km long [1]."]
    answer = translating.answerer.ask("How long is the Great Wall?", "default")
    assert not answer.declined
    translation_prompt, answer_prompt = generator.prompts
    assert "Simplified Chinese" in translation_prompt[0]["content"]
    assert prompts.REFUSAL_EN not in answer_prompt[0]["content"]
    generator.replies = ["Where is the wall? [1]"]
    translating.answerer.ask("长城有多长？", "default")  # in the documents' language
    assert prompts.REFUSAL_ZH in generator.prompts[-1][0]["content"]


def test_the_default_embedder_has_a_lower_threshold_for_translated_questions() -> None:
    from rag.container import per_embedder

    assert (
        per_embedder(Settings(), "min_evidence_translated")
        == 0.38
        < per_embedder(Settings(), "min_evidence")
    )
    assert per_embedder(Settings(min_evidence_translated=0.6), "min_evidence_translated") == 0.6
