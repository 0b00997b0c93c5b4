"""The page as people use it every day, in a real browser (Debian's chromium, headless,
driven by Playwright) against a real uvicorn with auth on and a scripted model: saved
conversations, example questions, filters, document details with the chunk viewer,
the admin screen, controls by role, both languages all the way, and an accessibility
audit (axe-core) of every screen. Each screen is photographed in English and Chinese
into test-artifacts/web/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.config import Settings
from rag.governance.access import KeyStore
from tests.fakes import ScriptedGenerator
from tests.files import pdf_pages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = REPO / "web" / "node_modules" / "axe-core" / "axe.min.js"
REPLY = "The Lore server listens on port **8000** by default [1]."

# Words of ours allowed on the Chinese page: names of things, and commands to type.
ALLOWED_LATIN = {
    "Lore",
    "API",
    "OCR",
    "UTF",
    "KB",
    "MB",
    "pdf",
    "lore",
    "keys",
    "create",
    "doctor",
    "migrate",
}


@dataclass
class Site:
    url: str
    keys: dict[str, str]
    generator: ScriptedGenerator

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make system-deps installs it)")
    assert AXE.exists(), "axe-core is missing: `make install` runs npm ci in web/"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture
def site(settings: Settings, docs: Path) -> Iterator[Site]:
    """Lore with auth on and a key per role: the writer and reader reach `default`."""
    from tests.unit.test_service import live

    secure = settings.model_copy(
        update={
            "auth": True,
            "example_questions": {},
            "rate_limit_per_minute": 10_000,
        }
    )
    secure.data_dir.mkdir(parents=True, exist_ok=True)
    store = KeyStore(secure.data_dir / "keys.sqlite3")
    keys = {
        "admin": store.create("Ada admin", "admin")[1],
        "writer": store.create("Wen writer", "writer", ["default"])[1],
        "reader": store.create("Rui reader", "reader", ["default"])[1],
    }
    store.close()
    (docs / "backups.md").write_text(
        "# Backups\n\nTo back up Lore, run lore backup while the server runs.\n\n"
        "# Upgrades\n\nRead the release notes, then install the new version.\n",
        encoding="utf-8",
    )
    generator = ScriptedGenerator(REPLY)
    with live(secure, generator, docs, key=keys["admin"]) as url:
        with (docs / "backups.md").open("rb") as handle:
            added = httpx.post(
                f"{url}/v1/documents",
                files={"file": ("backups.md", handle)},
                headers={"Authorization": f"Bearer {keys['admin']}"},
                timeout=120,
            )
        assert added.status_code == 201, added.text
        yield Site(url, keys, generator)


# -- what every screen is checked for ------------------------------------------------------


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it stands."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, so the page's CSP does not apply.
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations
              .filter((v) => v.impact === "serious" || v.impact === "critical")
              .map((v) => `${v.impact} ${v.id}: ${v.help} at ${
                v.nodes.map((n) => n.target.join(" ")).slice(0, 5).join(", ")}`);
        }"""
    )
    return list(found)


def _english_on_page(page: Any) -> list[str]:
    """Latin words in the page's own labels (not in what people wrote or named)."""
    found = page.evaluate(
        """(allowed) => {
            const ok = new Set(allowed);
            const own = (el) => el && !el.closest("[data-content], [lang='en'], script, style");
            const seen = [];
            const check = (text, where) => {
              for (const word of text.match(/[A-Za-z]{2,}/g) || []) {
                if (!ok.has(word)) seen.push(`${word} in ${where}: ${text.trim().slice(0, 80)}`);
              }
            };
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            while (walker.nextNode()) {
              const el = walker.currentNode.parentElement;
              if (!own(el) || !el.checkVisibility()) continue;
              if (el.tagName === "OPTION" && !el.selected) continue;
              check(walker.currentNode.textContent, `<${el.tagName.toLowerCase()}#${el.id}>`);
            }
            for (const el of document.querySelectorAll("[placeholder], [aria-label]")) {
              if (!own(el) || !el.checkVisibility()) continue;
              check((el.getAttribute("placeholder") || "").replace("lore_", ""), "placeholder");
              // "删除: ports.md": what follows the colon names a thing.
              check((el.getAttribute("aria-label") || "").split(":")[0], "aria-label");
            }
            return seen;
        }""",
        sorted(ALLOWED_LATIN),
    )
    return list(found)


def _screen(page: Any, name: str) -> None:
    """Photograph and audit the screen in English, then in Chinese (where no English
    label may remain), then switch back."""
    from playwright.sync_api import expect

    assert page.locator("html").get_attribute("lang") == "en"
    assert _serious_violations(page) == [], name
    _shot(page, f"{name}-en")
    page.click("#language")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.wait_for_timeout(300)  # the screen is written again, some of it after a fetch
    assert _english_on_page(page) == [], name
    assert _serious_violations(page) == [], f"{name} (zh)"
    _shot(page, f"{name}-zh")
    page.click("#language")
    expect(page.locator("html")).to_have_attribute("lang", "en")


def _open(browser: Any, site: Site, who: str) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(
        locale="en-US",
        viewport={"width": 1200, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(site.url)
    _log_in(page, site.keys[who])
    return context, page, errors


def _log_in(page: Any, key: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#login")).to_be_visible()
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#chat")).to_be_visible()


def _ask(page: Any, question: str) -> Any:
    from playwright.sync_api import expect

    before = page.locator(".turn.assistant .actions").count()
    page.fill("#question", question)
    page.click("#ask")
    expect(page.locator(".turn.assistant .actions")).to_have_count(before + 1)
    return page.locator(".turn.assistant").last


# -- the tests --------------------------------------------------------------------------------


def test_a_reader_keeps_conversations_and_sees_no_write_controls(browser: Any, site: Site) -> None:
    from playwright.sync_api import expect

    context, page, errors = _open(browser, site, "reader")
    expect(page.locator("#whoami")).to_contain_text("Rui reader")
    expect(page.locator("#tab-admin")).to_be_hidden()

    # The empty chat suggests questions drawn from the collection's headings.
    examples = page.locator("#examples button")
    expect(examples.first).to_be_visible()
    texts = examples.all_inner_texts()
    assert any("Backups" in text or "Ports" in text for text in texts), texts
    _screen(page, "20-chat-empty")

    # Ask (one example, one typed), then reload: the conversation is still there.
    examples.first.click()
    expect(page.locator(".turn.assistant .actions")).to_have_count(1)
    answer = _ask(page, "Which port does the Lore server listen on?")
    expect(answer.locator(".body strong")).to_have_text("8000")
    expect(page.locator("#conversations li")).to_have_count(1)
    answer.locator("button.cite").first.click()
    expect(page.locator("#passage-meta")).to_contain_text(".md")
    _screen(page, "21-chat-answer")
    page.keyboard.press("Escape")

    page.reload()
    expect(page.locator(".turn.assistant .actions")).to_have_count(2)
    expect(page.locator(".turn.user").last).to_contain_text("Which port")
    expect(page.locator("#conversations li.open")).to_have_count(1)

    # Rename it; give it filters; both are kept on the server.
    page.locator("#conversations li").first.get_by_role(
        "button", name=re.compile("^Rename")
    ).click()
    page.locator("#conversations form.rename input").fill("Ports and backups")
    page.locator("#conversations form.rename button[type=submit]").click()
    expect(page.locator("#conversations .title").first).to_have_text("Ports and backups")
    page.click("#filters summary")
    page.select_option("#filter-type", "md")
    page.fill("#filter-source", "ports.md")
    page.locator("#filter-source").press("Tab")
    expect(page.locator("#filters-summary")).to_have_text("Filters (2)")
    _screen(page, "22-chat-filters")
    site.generator.prompts.clear()
    _ask(page, "And the default port again?")
    read = "\n".join(m["content"] for m in site.generator.prompts[-1])
    assert "ports.md" in read or "8000" in read
    assert "lore backup" not in read, "the filter let another document through"

    page.reload()
    expect(page.locator(".turn.assistant .actions")).to_have_count(3)
    expect(page.locator("#filters-summary")).to_have_text("Filters (2)")
    page.click("#filters summary")
    expect(page.locator("#filter-type")).to_have_value("md")
    expect(page.locator("#filter-source")).to_have_value("ports.md")

    # A new login with the same key finds it; another key never sees it.
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    _log_in(page, site.keys["reader"])
    expect(page.locator("#conversations .title")).to_have_text(["Ports and backups"])
    others = httpx.get(f"{site.url}/v1/conversations", headers=site.headers("writer"))
    assert others.status_code == 200
    assert others.json() == []

    # Documents: readable, with details, but nothing to change.
    page.click("#tab-docs")
    expect(page.locator("#doc-rows tr")).to_have_count(2)
    expect(page.locator("#drop")).to_be_hidden()
    expect(page.locator("#read-only")).to_be_visible()
    expect(page.locator("#doc-rows [data-action=delete]")).to_have_count(0)
    expect(page.locator("#status")).to_have_text("")  # no chat note on this screen
    _screen(page, "23-documents-reader")
    page.locator("#doc-rows tr", has_text="backups.md").locator("[data-action=details]").click()
    expect(page.locator("#doc-detail")).to_be_visible()
    expect(page.locator("#doc-reingest")).to_be_hidden()
    expect(page.locator("#doc-chunks .chunk").first).to_contain_text("Backups")

    # Delete the conversation from the side list.
    page.click("#tab-chat")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#conversations li").first.get_by_role(
        "button", name=re.compile("^Delete")
    ).click()
    expect(page.locator("#conversations li")).to_have_count(0)
    expect(page.locator("#no-conversations")).to_be_visible()
    assert errors == []
    context.close()


def test_a_writer_uploads_a_pdf_reads_its_chunks_by_page_and_ingests_it_again(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    pdf = tmp_path / "handbook.pdf"
    pdf.write_bytes(
        pdf_pages(
            [
                "Chapter one. The Lore server listens on port 8000 by default.",
                "Chapter two. Backups copy the whole data directory every night.",
                "Chapter three. Keys are made with lore keys create by an admin.",
                "",  # a page with no text: the parser says so
            ]
        )
    )
    context, page, errors = _open(browser, site, "writer")
    expect(page.locator("#tab-admin")).to_be_hidden()
    page.click("#tab-docs")
    expect(page.locator("#drop")).to_be_visible()
    page.set_input_files("#file-input", str(pdf))
    expect(page.locator("#uploads li[data-file='handbook.pdf']")).to_have_attribute(
        "data-state", "indexed", timeout=120_000
    )
    row = page.locator("#doc-rows tr", has_text="handbook.pdf")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(1)).to_have_text("pdf")
    _screen(page, "24-documents-writer")

    row.locator("[data-action=details]").click()
    expect(page.locator("#doc-detail")).to_be_visible()
    facts = page.locator("#doc-facts")
    expect(facts).to_contain_text("you (Wen writer)")
    expect(facts).to_contain_text("pdf")
    expect(page.locator("#doc-warnings [data-code=empty_pages]")).to_contain_text(
        "Pages that gave no text: 4."
    )
    chunks = page.locator("#doc-chunks .chunk")
    expect(chunks.first).to_be_visible()
    metas = " ".join(page.locator("#doc-chunks .chunk .meta").all_inner_texts())
    for number in (1, 2, 3):
        assert f"page {number}" in metas, metas
    expect(page.locator("#doc-chunks")).to_contain_text("Backups copy the whole data directory")
    _screen(page, "25-document-details")

    page.click("#doc-reingest")
    expect(page.locator("#status")).to_contain_text("was ingested again")
    expect(page.locator("#doc-chunks .chunk").first).to_be_visible()

    # Back to the list, and delete it.
    page.click("#doc-back")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#doc-rows tr", has_text="handbook.pdf").locator("[data-action=delete]").click()
    expect(page.locator("#doc-rows tr", has_text="handbook.pdf")).to_have_count(0)
    assert errors == []
    context.close()


def test_an_admin_manages_keys_collections_audit_and_feedback(browser: Any, site: Site) -> None:
    from playwright.sync_api import expect

    # Some feedback to list: one rating up, one down with a comment.
    for rating, comment in (("up", None), ("down", "缺少端口说明")):
        given = httpx.post(
            f"{site.url}/v1/feedback",
            json={
                "question": "Which port?",
                "answer": "Port 8000 [1].",
                "rating": rating,
                "comment": comment,
            },
            headers=site.headers("reader"),
        )
        assert given.status_code == 201, given.text

    context, page, errors = _open(browser, site, "admin")
    expect(page.locator("#tab-admin")).to_be_visible()
    page.click("#tab-admin")
    expect(page.locator("#key-rows tr")).to_have_count(3)
    expect(page.locator("#feedback-rows tr")).to_have_count(2)

    # Create a reader key for `default`: it is shown once, and it works.
    page.fill("#key-name", "Report bot")
    page.select_option("#key-role", "reader")
    page.locator("#key-collection-boxes input[value=default]").check()
    page.click("#key-form button[type=submit]")
    expect(page.locator("#new-key")).to_be_visible()
    made = page.locator("#new-key-value").inner_text().strip()
    assert made.startswith("lore_")
    expect(page.locator("#key-rows tr")).to_have_count(4)
    works = httpx.get(f"{site.url}/v1/me", headers={"Authorization": f"Bearer {made}"})
    assert works.status_code == 200
    assert works.json()["role"] == "reader"

    # Collections: make one, see its size, delete it.
    page.fill("#collection-name", "contracts")
    page.click("#collection-form button[type=submit]")
    expect(page.locator("#collection-rows tr[data-collection=contracts]")).to_have_count(1)
    expect(page.locator("#collection option[value=contracts]")).to_have_count(1)

    # The audit chain, checked from the page; feedback filtered by rating.
    page.click("#audit-verify")
    expect(page.locator("#audit-result")).to_contain_text("Intact")
    page.select_option("#feedback-rating", "down")
    expect(page.locator("#feedback-rows tr")).to_have_count(1)
    expect(page.locator("#feedback-rows")).to_contain_text("缺少端口说明")
    _screen(page, "26-admin")

    with page.expect_download() as exported:
        page.click("#feedback-export")
    lines = Path(exported.value.path()).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    with page.expect_download() as exported:
        page.click("#audit-export")
    assert Path(exported.value.path()).read_text(encoding="utf-8").count("\n") > 3

    # Revoke the new key: it stops working at once.
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#key-rows tr", has_text="Report bot").get_by_role(
        "button", name=re.compile("^Revoke")
    ).click()
    expect(page.locator("#key-rows tr", has_text="Report bot")).to_contain_text("revoked")
    gone = httpx.get(f"{site.url}/v1/me", headers={"Authorization": f"Bearer {made}"})
    assert gone.status_code == 401
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#collection-rows tr[data-collection=contracts]").get_by_role("button").click()
    expect(page.locator("#collection-rows tr[data-collection=contracts]")).to_have_count(0)

    # Logging out leaves nothing of the admin's in the page for the next key.
    page.fill("#key-name", "Second bot")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#new-key")).to_be_visible()
    page.click("#logout")
    _log_in(page, site.keys["reader"])
    expect(page.locator("#tab-admin")).to_be_hidden()
    assert page.locator("#new-key-value").inner_text() == ""
    expect(page.locator("#key-rows tr")).to_have_count(0)
    expect(page.locator("#feedback-rows tr")).to_have_count(0)
    assert errors == []
    context.close()


def test_the_login_screen_and_server_errors_read_in_the_pages_language(
    browser: Any, site: Site
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="zh-CN", viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(site.url)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.click("#language")  # to English, for _screen
    _screen(page, "27-login")
    page.click("#language")
    page.fill("#api-key", "lore_not_a_key")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#status")).to_have_text("密钥未被接受，请用有效的密钥重新登录。")
    assert _english_on_page(page) == []

    # A reader refused by the server (a write it may not make) reads why in Chinese.
    _log_in(page, site.keys["reader"])
    status = page.evaluate(
        """async (key) => {
            const r = await fetch("/v1/collections", {method: "POST",
              headers: {"Authorization": `Bearer ${key}`, "Content-Type": "application/json"},
              body: JSON.stringify({name: "default"})});
            return [r.status, (await r.json()).code];
        }""",
        site.keys["reader"],
    )
    assert status == [403, "forbidden"]
    page.evaluate(
        """async () => {
            const { ApiError } = await import("/web/api.js");
            const { showError } = await import("/web/dom.js");
            showError(new ApiError(403, "This key may read collection 'default' but not change it.",
              null, "forbidden"));
        }"""
    )
    expect(page.locator("#status")).to_have_text("您的密钥无权执行此操作。")
    page.click("#language")
    expect(page.locator("#status")).to_have_text("Your key may not do that.")
    page.set_viewport_size({"width": 390, "height": 844})
    _screen(page, "28-phone")
    context.close()


def test_an_answer_streaming_when_another_conversation_opens_is_stopped_not_saved_there(
    browser: Any, settings: Settings, docs: Path
) -> None:
    """An answer belongs to the conversation it was asked in: opening another one while
    it streams stops it, and nothing lands in the one opened."""
    from playwright.sync_api import expect

    from tests.unit.test_service import SlowGenerator, live

    generator = SlowGenerator(delay=0.2, words=200)  # 40 s if left to run
    with live(settings, generator, docs) as url:
        made = httpx.post(f"{url}/v1/conversations", json={"title": "Older"}).json()
        kept = {"question": "Earlier?", "answer": "Earlier.", "declined": False}
        added = httpx.post(
            f"{url}/v1/conversations/{made['id']}/turns",
            json={**kept, "citations": [], "sources": []},
        )
        assert added.status_code == 201, added.text
        context = browser.new_context(locale="en-US")
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(url)
        expect(page.locator("#conversations li")).to_have_count(1)
        page.fill("#question", "Which port does Lore use?")
        page.click("#ask")
        expect(page.locator(".turn.assistant .body").last).to_contain_text("word")
        page.locator("#conversations .open-conversation").first.click()
        expect(page.locator(".turn.user .body")).to_have_text(["Earlier?"])
        expect(page.locator("#stop")).to_be_hidden()
        deadline = 50
        while generator.stopped == 0 and deadline:
            page.wait_for_timeout(100)
            deadline -= 1
        assert generator.stopped == 1, "the answer kept streaming after another was opened"
        listed = httpx.get(f"{url}/v1/conversations").json()
        assert [(c["title"], c["turn_count"]) for c in listed] == [("Older", 1)]
        context.close()
