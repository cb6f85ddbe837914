"""The catalog's admin page (/admin.html) in Chromium: an administrator lists, creates, edits and
deletes subjects and teachers through its forms; field errors are shown next to their fields in
the page's words; deletes are confirmed in a <dialog>; a subject that still has teachers is not
deleted (409, explained); an edit shows at the top of the audit log; nobody else gets the controls,
and the API refuses them anyway."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.harness.pages import PageLog, conn, logged_in_context, teacher
from tests.harness.server import LiveServer, UserClient, sign_up, sign_up_admin

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN, ADMIN_PASSWORD = "root", "admin password"
PASSWORD = "correct horse battery"
MARKUP = "<img src=x onerror=alert(1)>"
DENIED = "只有管理员可以编辑目录。 Only administrators can edit the catalog."
HAS_TEACHERS = "这个科目还有老师，先删除或移走他们。 This subject still has teachers: delete or move them first."
FIX_FIELDS = "请修改标出的内容。 Please correct the marked fields."
SEEDED_SUBJECTS = 5


def subject_row(page: Page, no: int) -> Any:
    return page.locator(f'#subject-rows tr[data-no="{no}"]')


def teacher_row(page: Page, no: int) -> Any:
    return page.locator(f'#teacher-rows tr[data-no="{no}"]')


async def open_admin(
    browser: Browser, server: LiveServer, path: str = "/admin.html", **options: Any
) -> tuple[BrowserContext, Page, PageLog]:
    """An administrator's context on the admin page, its lists loaded."""
    context = await logged_in_context(browser, server, ADMIN, ADMIN_PASSWORD, **options)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto(path)
    await expect(page.locator("#subject-form")).to_be_visible(timeout=10_000)
    await expect(page.locator("#admin")).not_to_have_attribute("aria-busy", "true")
    return context, page, log


async def subject_names(admin: UserClient) -> list[str]:
    response = await admin.get("/api/subjects/")
    assert response.status == 200, response.body
    return [subject["name"] for subject in response.json()]


# -- creating and editing through the forms -------------------------------------------------------


async def test_an_admin_creates_and_edits_a_subject_and_a_teacher_and_sees_them_everywhere(
    browser: Browser, server: LiveServer
) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    context, page, log = await open_admin(browser, server)
    await expect(page.locator("#subject-rows tr[data-no]")).to_have_count(SEEDED_SUBJECTS)
    await expect(page.locator("#admin-link")).to_have_attribute("aria-current", "page")
    await expect(page.locator("#account .who")).to_have_text(ADMIN)
    # The first subject's teachers are listed from the start.
    await expect(page.locator("#teacher-rows tr[data-no]")).to_have_count(3)
    await expect(page.locator("#teachers-view")).to_contain_text("Python全栈+人工智能")

    await page.locator("#subject-name").fill("量子计算")
    await page.locator("#subject-intro").fill("从量子比特到算法。")
    await page.locator("#subject-hot").check()
    await page.locator("#subject-submit").click()
    await expect(page.locator("#notice")).to_have_text("已新建科目「量子计算」。 Subject created.")
    await expect(page.locator("#subject-rows tr[data-no]")).to_have_count(SEEDED_SUBJECTS + 1)
    created = [s for s in (await admin.get("/api/subjects/")).json() if s["name"] == "量子计算"]
    assert len(created) == 1 and created[0]["is_hot"] is True and created[0]["intro"] == "从量子比特到算法。"
    sno = created[0]["no"]
    row = subject_row(page, sno)
    await expect(row.locator(".row-name")).to_have_text("量子计算")
    await expect(row.locator(".hot")).to_be_visible()
    # The new subject is chosen: its (empty) teacher list, and the form names it.
    await expect(row.locator(".show-teachers")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#teachers-view")).to_contain_text("量子计算")
    await expect(page.locator("#teacher-rows")).to_contain_text("这个科目还没有老师。")
    await expect(page.locator("#subject-name")).to_have_value("")  # back to a blank "new subject" form
    assert re.search(rf"[?&]sno={sno}$", page.url)

    await page.locator("#teacher-name").fill("钱学森")
    await page.locator("#teacher-sex").select_option("true")
    await page.locator("#teacher-birth").fill("1911-12-11")
    await page.locator("#teacher-photo").fill("teacher-03.svg")
    await page.locator("#teacher-intro").fill("空气动力学。")
    await expect(page.locator("#teacher-subject")).to_have_value(str(sno))
    await page.locator("#teacher-submit").click()
    await expect(page.locator("#notice")).to_have_text("已新建老师「钱学森」。 Teacher created.")
    await expect(page.locator("#teacher-rows tr[data-no]")).to_have_count(1)
    listed = (await admin.get(f"/api/teachers/?sno={sno}")).json()["teachers"]
    assert [(t["name"], t["sex"], t["birth"], t["photo"], t["intro"]) for t in listed] == [
        ("钱学森", True, "1911-12-11", "teacher-03.svg", "空气动力学。")
    ]
    tno = listed[0]["no"]
    await expect(teacher_row(page, tno).locator(".row-name")).to_have_text("钱学森")
    await expect(teacher_row(page, tno).locator(".birth")).to_have_text("1911-12-11")

    # Edit the teacher: the form fills with what is stored, saving replaces it.
    await teacher_row(page, tno).locator(".edit").click()
    await expect(page.locator("#teacher-form")).to_have_attribute("data-mode", "edit")
    await expect(page.locator("#teacher-name")).to_have_value("钱学森")
    await expect(page.locator("#teacher-birth")).to_have_value("1911-12-11")
    await expect(page.locator("#teacher-photo")).to_have_value("teacher-03.svg")
    await page.locator("#teacher-name").fill("钱老")
    await page.locator("#teacher-sex").select_option("false")
    await page.locator("#teacher-submit").click()
    await expect(page.locator("#notice")).to_have_text("已保存老师「钱老」。 Teacher saved.")
    await expect(teacher_row(page, tno).locator(".row-name")).to_have_text("钱老")
    await expect(teacher_row(page, tno).locator(".sex")).to_have_text("女 Female")
    await expect(page.locator("#teacher-form")).to_have_attribute("data-mode", "create")
    stored = (await admin.get(f"/api/teachers/{tno}/")).json()
    assert (stored["name"], stored["sex"], stored["birth"], stored["subject"]) == ("钱老", False, "1911-12-11", sno)

    # Edit the subject: name, intro and is_hot.
    await row.locator(".edit").click()
    await expect(page.locator("#subject-name")).to_have_value("量子计算")
    await expect(page.locator("#subject-hot")).to_be_checked()
    await page.locator("#subject-name").fill("量子信息")
    await page.locator("#subject-intro").fill("量子通信与计算。")
    await page.locator("#subject-hot").uncheck()
    await page.locator("#subject-submit").click()
    await expect(page.locator("#notice")).to_have_text("已保存科目「量子信息」。 Subject saved.")
    await expect(row.locator(".row-name")).to_have_text("量子信息")
    await expect(row.locator(".hot")).to_have_count(0)
    await expect(page.locator("#teachers-view")).to_contain_text("量子信息")
    assert (await admin.get(f"/api/subjects/{sno}/")).json() == {
        "no": sno, "name": "量子信息", "intro": "量子通信与计算。", "is_hot": False,
        "opens_at": None, "closes_at": None, "visibility": "always", "state": "open",
    }
    # The audit log shows the edit on top: who, what, and each field that changed.
    newest = page.locator("#audit-rows tr").first
    await expect(newest).to_have_attribute("data-action", "subject.update")
    await expect(newest.locator(".audit-who")).to_have_text(ADMIN)
    await expect(newest.locator(".audit-record")).to_have_text(f"科目 Subject #{sno} 「量子信息」")
    await expect(newest.locator(".audit-field")).to_have_text(
        ["name: 量子计算 → 量子信息", "intro: 从量子比特到算法。 → 量子通信与计算。", "is_hot: true → false"]
    )

    # Move the teacher to the first subject: it leaves this list.
    await teacher_row(page, tno).locator(".edit").click()
    await page.locator("#teacher-subject").select_option("1")
    await page.locator("#teacher-submit").click()
    await expect(teacher_row(page, tno)).to_have_count(0)
    await expect(page.locator("#teacher-rows")).to_contain_text("这个科目还没有老师。")
    await subject_row(page, 1).locator(".show-teachers").click()
    await expect(teacher_row(page, tno).locator(".row-name")).to_have_text("钱老")

    # The public pages show what was made.
    await page.goto("/teachers.html?sno=1")
    await expect(conn(page)).to_have_attribute("data-state", "live")
    await expect(teacher(page, tno).locator(".name")).to_have_text("钱老")
    await expect(teacher(page, tno).locator("img.photo")).to_have_attribute("src", "/static/images/teacher-03.svg")
    await page.goto("/")
    await expect(page.locator(f'a.subject[data-no="{sno}"] h2')).to_have_text("量子信息")
    await expect(page.locator("#admin-link")).to_be_visible()  # an admin finds the way back from any page
    log.assert_clean()
    await context.close()


# -- field errors ------------------------------------------------------------------------------------


async def test_field_errors_are_shown_next_to_their_fields_in_the_pages_words(
    browser: Browser, server: LiveServer
) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    context, page, log = await open_admin(browser, server, "/admin.html?sno=2")
    await expect(page.locator("#teacher-rows tr[data-no]")).to_have_count(3)

    # A subject with no name (only spaces): the name field says so; the intro typed stays.
    await page.locator("#subject-name").fill("   ")
    await page.locator("#subject-intro").fill("保留我 keep me")
    await page.locator("#subject-submit").click()
    await expect(page.locator("#subject-name-error")).to_have_text("太短了 Too short")
    await expect(page.locator("#subject-name")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#notice")).to_have_text(FIX_FIELDS)
    await expect(page.locator("#subject-intro")).to_have_value("保留我 keep me")
    await expect(page.locator("#subject-name")).to_have_value("   ")
    assert len(await subject_names(admin)) == SEEDED_SUBJECTS

    # A teacher with no name, no birth date (the date input holds no whole date) and a bad photo
    # name: three fields, three translations, nothing of the server's English.
    await page.locator("#teacher-name").fill("")
    await page.locator("#teacher-intro").fill("一位好老师")
    await page.locator("#teacher-photo").fill("../etc/passwd")
    await page.locator("#teacher-submit").click()
    await expect(page.locator("#teacher-name-error")).to_have_text("太短了 Too short")
    await expect(page.locator("#teacher-birth-error")).to_have_text("应为日期，如 1980-05-17 Must be a date")
    await expect(page.locator("#teacher-photo-error")).to_have_text("格式不对 Wrong format")
    await expect(page.locator("#teacher-sex-error")).to_be_hidden()
    validator_wording = re.compile(r"should|must be an ISO|String", re.IGNORECASE)
    for error in ("#teacher-name-error", "#teacher-birth-error", "#teacher-photo-error"):
        await expect(page.locator(error)).not_to_contain_text(validator_wording)
    await expect(page.locator("#teacher-intro")).to_have_value("一位好老师")
    await expect(page.locator("#teacher-photo")).to_have_value("../etc/passwd")
    await expect(page.locator("#teacher-rows tr[data-no]")).to_have_count(3)

    # Fixed, it saves, and the errors go.
    await page.locator("#teacher-name").fill("华罗庚")
    await page.locator("#teacher-birth").fill("1910-11-12")
    await page.locator("#teacher-photo").fill("")
    await page.locator("#teacher-submit").click()
    await expect(page.locator("#teacher-rows tr[data-no]")).to_have_count(4)
    for error in ("#teacher-name-error", "#teacher-birth-error", "#teacher-photo-error"):
        await expect(page.locator(error)).to_be_hidden()
    await expect(page.locator("#teacher-name")).not_to_have_attribute("aria-invalid", "true")

    # A failed edit (PUT) keeps the text, shows the error and changes nothing.
    await teacher_row(page, 4).locator(".edit").click()
    await page.locator("#teacher-name").fill("x" * 51)
    await page.locator("#teacher-submit").click()
    await expect(page.locator("#teacher-name-error")).to_have_text("太长了 Too long")
    await expect(page.locator("#teacher-name")).to_have_value("x" * 51)
    await expect(page.locator("#teacher-form")).to_have_attribute("data-mode", "edit")
    assert (await admin.get("/api/teachers/4/")).json()["name"] == "赵一鸣"  # as seeded
    await page.locator("#teacher-cancel").click()
    await expect(page.locator("#teacher-form")).to_have_attribute("data-mode", "create")
    await expect(page.locator("#teacher-name")).to_have_value("")
    await expect(page.locator("#teacher-name-error")).to_be_hidden()
    log.assert_clean()
    await context.close()


# -- deleting ---------------------------------------------------------------------------------------


async def test_deletes_are_confirmed_and_a_subject_with_teachers_is_kept(browser: Browser, server: LiveServer) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    made = await admin.request("POST", "/api/subjects/", json_body={"name": "天文"})
    sno = made.json()["no"]
    hired = await admin.request(
        "POST", "/api/teachers/", json_body={"name": "张衡", "sex": True, "birth": "1978-01-01", "subject": sno}
    )
    tno = hired.json()["no"]
    context, page, log = await open_admin(browser, server, f"/admin.html?sno={sno}")
    dialog = page.locator("dialog#confirm")
    await expect(teacher_row(page, tno)).to_be_visible()
    await expect(dialog).to_be_hidden()

    # Cancel: the dialog names the subject, closes, and nothing is deleted.
    await subject_row(page, sno).locator(".delete").click()
    await expect(dialog).to_be_visible()
    await expect(page.locator("#confirm-text")).to_contain_text("「天文」")
    await expect(page.locator("#confirm-text")).to_contain_text('Delete the subject "天文"')
    await page.locator("#confirm-no").click()
    await expect(dialog).to_be_hidden()
    # Escape is a cancel too.
    await subject_row(page, sno).locator(".delete").click()
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert (await admin.get(f"/api/subjects/{sno}/")).status == 200
    await expect(subject_row(page, sno)).to_be_visible()

    # Confirm: the server refuses (409) while it has teachers; the page says why, in both languages.
    await subject_row(page, sno).locator(".delete").click()
    await page.locator("#confirm-yes").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#notice")).to_have_text(HAS_TEACHERS)
    await expect(subject_row(page, sno)).to_be_visible()
    await expect(teacher_row(page, tno)).to_be_visible()
    assert (await admin.get(f"/api/subjects/{sno}/")).status == 200
    assert (await admin.get(f"/api/teachers/{tno}/")).status == 200

    # The teacher: cancel, then confirm.
    await teacher_row(page, tno).locator(".delete").click()
    await expect(page.locator("#confirm-text")).to_contain_text("「张衡」")
    await page.locator("#confirm-no").click()
    await expect(dialog).to_be_hidden()
    assert (await admin.get(f"/api/teachers/{tno}/")).status == 200
    await teacher_row(page, tno).locator(".delete").click()
    await page.locator("#confirm-yes").click()
    await expect(page.locator("#notice")).to_have_text("已删除老师「张衡」。 Teacher deleted.")
    await expect(teacher_row(page, tno)).to_have_count(0)
    assert (await admin.get(f"/api/teachers/{tno}/")).status == 404

    # Now the subject goes.
    await subject_row(page, sno).locator(".delete").click()
    await page.locator("#confirm-yes").click()
    await expect(page.locator("#notice")).to_have_text("已删除科目「天文」。 Subject deleted.")
    await expect(subject_row(page, sno)).to_have_count(0)
    await expect(page.locator("#subject-rows tr[data-no]")).to_have_count(SEEDED_SUBJECTS)
    await expect(page.locator("#teachers-hint")).to_be_visible()  # no subject chosen any more
    assert (await admin.get(f"/api/subjects/{sno}/")).status == 404
    assert "sno=" not in page.url
    log.assert_clean()
    await context.close()


# -- who gets the controls --------------------------------------------------------------------------


async def test_a_plain_user_gets_no_controls_and_the_api_refuses_a_forced_write(
    browser: Browser, server: LiveServer
) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    await sign_up(server, "pat")
    context = await logged_in_context(browser, server, "pat", PASSWORD)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/admin.html")
    await expect(page.locator("#denied")).to_have_text(re.compile(re.escape(DENIED)))
    await expect(page.locator("#denied a#home")).to_have_attribute("href", "/")
    await expect(page.locator("#account .who")).to_have_text("pat")
    for control in ("form", "dialog", "input", "textarea", "select", "button.edit", "button.delete", "#admin-link"):
        assert await page.locator(control).count() == 0, control

    # Forced through the page's own client, with pat's token: 403, and nothing changes.
    status = await page.evaluate("""async () => {
        const { api } = await import("/static/js/livevote.js");
        const tries = [
            ["/api/subjects/", "POST", { name: "pat's subject" }],
            ["/api/subjects/1/", "PATCH", { name: "pwned" }],
            ["/api/teachers/1/", "DELETE", undefined],
        ];
        const statuses = [];
        for (const [path, method, body] of tries) {
            try { await api(path, { method, body, auth: true }); statuses.push(200); }
            catch (error) { statuses.push(error.status); }
        }
        return statuses;
    }""")
    assert status == [403, 403, 403]
    names = await subject_names(admin)
    assert len(names) == SEEDED_SUBJECTS and "pat's subject" not in names and "pwned" not in names
    assert (await admin.get("/api/teachers/1/")).status == 200

    await page.goto("/")  # no way to the admin page from the other pages either
    await expect(page.locator("#account .who")).to_have_text("pat")
    await expect(page.locator("#admin-link")).to_have_count(0)
    log.assert_clean()
    await context.close()


async def test_a_visitor_is_sent_to_log_in_and_an_admin_comes_back(browser: Browser, server: LiveServer) -> None:
    await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/admin.html?sno=3")
    await expect(page).to_have_url(re.compile(r"/login\.html\?next=%2Fadmin\.html%3Fsno%3D3$"))
    # With no token the API says 401.
    status = await page.evaluate("""async () => (await fetch("/api/subjects/", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: "anon" }),
    })).status""")
    assert status == 401
    await page.locator("#username").fill(ADMIN)
    await page.locator("#password").fill(ADMIN_PASSWORD)
    await page.locator("#submit").click()
    await expect(page).to_have_url(re.compile(r"/admin\.html\?sno=3$"))
    await expect(page.locator("#subject-form")).to_be_visible()
    await expect(subject_row(page, 3).locator(".show-teachers")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#teacher-rows tr[data-no]")).to_have_count(3)
    log.assert_clean()
    await context.close()


# -- escaping -------------------------------------------------------------------------------------


async def test_markup_in_names_is_shown_as_text(browser: Browser, server: LiveServer) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    # bypass_csp: escaping alone must keep the markup inert; the CSP is a second wall.
    context, page, log = await open_admin(browser, server, bypass_csp=True)
    await page.locator("#subject-name").fill(MARKUP)
    await page.locator("#subject-intro").fill("<script>window.__pwned = 1</script>")
    await page.locator("#subject-submit").click()
    await expect(page.locator("#notice")).to_have_text(f"已新建科目「{MARKUP}」。 Subject created.")
    sno = next(s["no"] for s in (await admin.get("/api/subjects/")).json() if s["name"] == MARKUP)
    await expect(subject_row(page, sno).locator(".row-name")).to_have_text(MARKUP)
    await expect(subject_row(page, sno).locator(".intro-cell")).to_have_text("<script>window.__pwned = 1</script>")
    await expect(page.locator("#audit-rows tr").first.locator(".audit-record")).to_contain_text(MARKUP)
    await expect(page.locator("#teachers-view")).to_contain_text(MARKUP)
    await expect(page.locator("#teacher-subject option", has_text=MARKUP)).to_have_count(1)

    await page.locator("#teacher-name").fill(MARKUP)
    await page.locator("#teacher-birth").fill("1990-01-01")
    await page.locator("#teacher-intro").fill('<b onmouseover="window.__pwned = 2">intro</b>')
    await page.locator("#teacher-submit").click()
    await expect(page.locator("#teacher-rows tr[data-no]")).to_have_count(1)
    await expect(page.locator("#teacher-rows .row-name")).to_have_text(MARKUP)
    await page.locator("#teacher-rows .edit").click()
    await expect(page.locator("#teacher-form-title")).to_have_text(f"编辑老师「{MARKUP}」 Edit teacher")
    await page.locator("#teacher-cancel").click()
    await page.locator("#teacher-rows .delete").click()
    await expect(page.locator("#confirm-text")).to_contain_text(f"「{MARKUP}」")
    await page.locator("#confirm-no").click()
    await expect(page.locator("dialog#confirm")).to_be_hidden()

    assert await page.locator('img[src="x"]').count() == 0
    assert await page.locator("main script, main b").count() == 0
    assert await page.evaluate("() => window.__pwned === undefined")
    log.assert_clean()
    await context.close()
