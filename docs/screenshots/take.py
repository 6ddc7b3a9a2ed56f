"""Screenshots of every desk page from a running desk (scripts/demo), for the README.

    scripts/demo --port 8000 &            # wait for "riskdesk is running"
    .venv/bin/python docs/screenshots/take.py --url http://127.0.0.1:8000 --wait-s 60

Uses Debian's Chromium (apt-get install chromium) through Playwright, as the browser tests do.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
PAGES = [
    ("overview", "/"),
    ("positions", "/positions/"),
    ("alerts", "/alerts/?status=all"),
    ("accounts", "/accounts/"),
    ("rules", "/rules/"),
    ("what-if", "/positions/what-if/?mode=crash"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="risk")
    parser.add_argument("--password", default="riskdesk-demo")
    parser.add_argument("--wait-s", type=float, default=0, help="let the crash replay run before the first shot")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        for locale, suffix in (("en-US", ""), ("zh-CN", "-zh")):
            page = browser.new_context(locale=locale, viewport={"width": 1440, "height": 900}).new_page()
            page.goto(f"{args.url}/login/")
            if not suffix:
                page.screenshot(path=HERE / "sign-in.png")
            page.fill("input[name=username]", args.user)
            page.fill("input[name=password]", args.password)
            page.click("button[type=submit]")
            page.wait_for_selector('#conn[data-state="live"]', timeout=20000)
            if args.wait_s and not suffix:
                time.sleep(args.wait_s)
            for name, path in PAGES if not suffix else PAGES[:2]:
                page.goto(args.url + path)
                page.wait_for_selector('#conn[data-state="live"]', timeout=20000)
                page.wait_for_timeout(1500)  # charts drawn, a live refresh or two done
                page.screenshot(path=HERE / f"{name}{suffix}.png", full_page=True)
                print("wrote", name + suffix)
            if not suffix:
                page.goto(args.url + "/accounts/")
                page.wait_for_selector('#conn[data-state="live"]')
                page.locator("tr", has_text="beta-hedge").locator("[data-testid^=kill-]").click()
                page.wait_for_selector("dialog#dialog [data-testid=confirm]")
                page.wait_for_timeout(500)
                page.screenshot(path=HERE / "kill-switch-confirm.png")
                print("wrote kill-switch-confirm")
        browser.close()


if __name__ == "__main__":
    main()
