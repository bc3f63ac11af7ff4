"""The dashboard in a real browser: Debian's Chromium driven over WebDriver
(Python selenium) against the running `tern serve`.

Logs in (a wrong password first), checks that the overview's figures equal
the API's, finds a message with a hostile subject and reads its timeline
(the subject stays text, no script runs), retries a queued message,
suppresses and unsuppresses an address, shows that a form posted without
its CSRF token is refused, and that repeated wrong passwords are throttled.
A screenshot of every page goes to $TERN_SCREENSHOTS.

Environment: TERN_HTTP (host:port), TERN_KEY (an admin API key),
TERN_WEB_USER / TERN_WEB_PASS, TERN_SCREENSHOTS (a folder).
"""

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HTTP = os.environ["TERN_HTTP"]
BASE = f"http://{HTTP}"
KEY = os.environ["TERN_KEY"]
USER = os.environ["TERN_WEB_USER"]
PASS = os.environ["TERN_WEB_PASS"]
SHOTS = os.environ.get("TERN_SCREENSHOTS", "screenshots")
os.makedirs(SHOTS, exist_ok=True)


def api(method, path, body=None):
    req = urllib.request.Request(
        BASE + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def browser():
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--disable-gpu"):
        opts.add_argument(a)
    for binary in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(binary):
            opts.binary_location = binary
            break
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(driver), options=opts)


def shot(d, name):
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def submit(d, button):
    """Clicks a button that submits a form, and waits for the next page."""
    page = d.find_element(By.TAG_NAME, "html")
    button.click()

    def replaced(_):
        # The old page's root is gone once the new page is in. Chromium
        # sometimes says so with a generic WebDriverException ("node does
        # not belong to the document") instead of a stale reference.
        try:
            page.is_enabled()
            return False
        except WebDriverException:
            return True

    WebDriverWait(d, 60).until(replaced)
    WebDriverWait(d, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")


def login(d, password):
    d.get(BASE + "/login")
    d.find_element(By.ID, "email").send_keys(USER)
    d.find_element(By.ID, "password").send_keys(password)
    submit(d, d.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def no_alert(d):
    try:
        d.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def main():
    # Mail to show: a hostile subject (delivered locally), one that waits
    # (stuck.test goes to a closed port).
    xss = "<script>alert('owned')</script> <img src=x onerror=alert(1)> & Co"
    sent = api("POST", "/v1/messages", {"from": "alice@example.test", "to": ["bob@example.test"],
                                         "subject": xss, "text": "hi", "tags": ["dash"]})
    stuck = api("POST", "/v1/messages", {"from": "alice@example.test", "to": ["carl@stuck.test"],
                                          "subject": "waiting", "text": "hi"})
    d = browser()
    try:
        d.get(BASE + "/")
        assert "/login" in d.current_url, d.current_url
        shot(d, "login")
        login(d, "not-the-password")
        assert "Wrong email or password" in d.page_source
        login(d, PASS)
        assert d.find_element(By.TAG_NAME, "h1").text == "Overview", d.page_source[:500]

        # The overview equals the API (the same seven days).
        for _ in range(50):
            health = api("GET", "/v1/domains/example.test/health")
            d.get(BASE + "/?range=week&domain=example.test")
            figures = {e.get_attribute("data-figure"): int(e.text)
                       for e in d.find_elements(By.CSS_SELECTOR, "[data-figure]")}
            week = health["last_7_days"]
            keys = ["accepted", "delivered", "bounced", "deferred", "complained",
                    "unsubscribed", "opened", "clicked"]
            if all(figures[k] == week[k] for k in keys):
                break
            time.sleep(0.2)  # an event landed between the two reads
        else:
            raise AssertionError(f"overview {figures} != API {week}")
        assert figures["accepted"] >= 2, figures
        shot(d, "overview")
        d.get(BASE + "/")
        shot(d, "overview-all")

        # Find the hostile message and read its timeline.
        d.get(BASE + "/messages?q=tag:dash")
        shot(d, "messages")
        submit(d, d.find_element(By.LINK_TEXT, sent["id"]))
        body = d.find_element(By.TAG_NAME, "main").text
        assert xss in body, body
        assert no_alert(d), "a script from the subject ran"
        assert not d.find_elements(By.CSS_SELECTOR, "main img"), "the subject's <img> became an element"
        shot(d, "timeline")

        # The message that waits: retry it from its page.
        for _ in range(100):
            d.get(BASE + f"/messages/{stuck['id']}")
            if d.find_elements(By.XPATH, "//button[text()='Retry now']"):
                break
            time.sleep(0.1)
        submit(d, d.find_element(By.XPATH, "//button[text()='Retry now']"))
        assert f"/messages/{stuck['id']}" in d.current_url
        assert "Waiting in the queue" in d.page_source
        shot(d, "timeline-queued")
        d.get(BASE + "/queue")
        assert "stuck.test" in d.page_source
        shot(d, "queue")

        # Suppress and unsuppress.
        d.get(BASE + "/suppressions")
        d.find_element(By.ID, "address").send_keys("nomore@remote.test")
        submit(d, d.find_element(By.XPATH, "//button[text()='Suppress']"))
        assert "nomore@remote.test" in d.page_source
        listed = api("GET", "/v1/suppressions")
        assert any(s["address"] == "nomore@remote.test" for s in listed["suppressions"]), listed
        shot(d, "suppressions")
        submit(d, d.find_element(By.CSS_SELECTOR, "button[aria-label='Remove nomore@remote.test']"))
        assert "nomore@remote.test" not in d.find_element(By.TAG_NAME, "table").text
        listed = api("GET", "/v1/suppressions")
        assert not any(s["address"] == "nomore@remote.test" for s in listed["suppressions"])

        for page in ("domains", "domains/example.test", "webhooks", "keys", "accounts"):
            d.get(f"{BASE}/{page}")
            assert d.find_element(By.TAG_NAME, "h1").text, page
            shot(d, page.replace("/", "-"))

        # A phone.
        d.set_window_size(390, 844)
        d.get(BASE + "/")
        shot(d, "overview-phone")
        d.set_window_size(1280, 900)

        # A form posted without its CSRF token (as another site would) is refused.
        session = d.get_cookie("tern_session")
        assert session and session.get("httpOnly"), session
        req = urllib.request.Request(
            BASE + "/suppressions", method="POST",
            data=b"address=evil%40remote.test&domain=",
            headers={"Cookie": f"tern_session={session['value']}",
                     "Content-Type": "application/x-www-form-urlencoded"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a form without its CSRF token was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code

        # Log out; then wrong passwords are throttled.
        submit(d, d.find_element(By.XPATH, "//button[text()='Log out']"))
        assert "/login" in d.current_url
        refused = False
        for _ in range(30):
            login(d, "wrong-again")
            if "Too many failed logins" in d.page_source:
                refused = True
                break
        assert refused, "wrong passwords were never throttled"
        shot(d, "login-throttled")
    finally:
        d.quit()
    print(f"dashboard: Chromium logged in, overview equals the API, XSS subject stayed text, "
          f"retry, suppress/unsuppress, CSRF refusal, throttling; screenshots in {SHOTS}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
