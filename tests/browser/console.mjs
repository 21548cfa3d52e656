// The web console in a real browser: Debian's chromium, driven by
// playwright-core. Signs in, finds the pending approval in the inbox, checks
// that the detail page shows the exact payload, approves it, and checks the
// page says so. Run by the gateway's browser test, which sets:
//   CONSOLE_URL      http://127.0.0.1:PORT (the admin listener)
//   CONSOLE_USER     an approver
//   CONSOLE_PASSWORD its password
//   APPROVAL_ID      the pending approval
//   EXPECT_PAYLOAD   text the payload must contain, e.g. "new@example.com"
//   SCREENSHOT_DIR   where to write PNG screenshots
//   CHROMIUM         the browser (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const base = need("CONSOLE_URL");
const id = need("APPROVAL_ID");
const expected = need("EXPECT_PAYLOAD");
const shots = process.env.SCREENSHOT_DIR || tmpdir();
mkdirSync(shots, { recursive: true });

// launch() gives the browser a new, empty profile directory of its own.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15000);
  const fail = (what) => {
    throw new Error(what);
  };

  // Not signed in: the console sends us to the sign-in form.
  await page.goto(`${base}/console`);
  if (!page.url().endsWith("/console/login")) fail(`expected the sign-in page, got ${page.url()}`);
  await page.fill("#user", need("CONSOLE_USER"));
  await page.fill("#password", need("CONSOLE_PASSWORD"));
  await page.click("#sign-in");
  await page.waitForURL(`${base}/console/approvals`);
  await page.screenshot({ path: join(shots, "1-inbox.png"), fullPage: true });

  // The inbox lists the approval; its page shows the exact payload.
  const row = page.locator(`tr[data-approval="${id}"]`);
  if ((await row.count()) !== 1) fail(`approval ${id} is not in the inbox`);
  await row.locator("a").click();
  await page.waitForURL(`${base}/console/approvals/${id}`);
  const payload = await page.textContent("#payload");
  if (!payload.includes(expected)) fail(`the payload does not show ${expected}: ${payload}`);
  const state = await page.textContent("#state");
  if (!state.startsWith("pending")) fail(`expected pending, got ${state}`);
  const target = await page.textContent("#target");
  await page.screenshot({ path: join(shots, "2-detail.png"), fullPage: true });

  // Approve it.
  await page.fill("#approve-reason", "checked in the browser test");
  await page.click("#approve");
  await page.waitForURL(/done=approved/);
  const done = await page.textContent("p.ok");
  if (!done.includes("Your approval is recorded")) fail(`no confirmation: ${done}`);
  const after = await page.textContent("#state");
  if (!/^(approved|executed)/.test(after)) fail(`expected approved, got ${after}`);
  if ((await page.locator("#approve").count()) !== 0) fail("the approve button is still there");
  await page.screenshot({ path: join(shots, "3-approved.png"), fullPage: true });
  console.log(JSON.stringify({ approved: id, target, payload: payload.trim(), state: after }));
} finally {
  await browser.close();
}
