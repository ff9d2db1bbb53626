// Opens `quicmesh dashboard` in headless Chromium (Debian's, through
// playwright-core), waits until the graph shows what the test expects,
// keeps a screenshot, and prints what the page showed as JSON.
//
//   node dashboard.mjs URL SCREENSHOT.png EXPECT.json
//
// EXPECT: {"edges": [[src, dst, needsRequests], ...], "waypoints": [id, ...],
//          "timeoutMs": 60000}. Exit 0 when everything expected was seen
// (and requests flowed on the edges that need them), 1 otherwise.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const [url, screenshot, expectFile] = process.argv.slice(2);
const expect = JSON.parse(readFileSync(expectFile, "utf8"));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Root in CI: Chromium's sandbox needs user namespaces it may not get.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let ok = false;
let seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { timeout: 30000 });
  const deadline = Date.now() + (expect.timeoutMs || 60000);
  while (Date.now() < deadline) {
    seen = await page.evaluate(() => ({
      ready: document.body.dataset.ready === "1",
      edges: [...document.querySelectorAll("g.edge")].map((g) => ({
        src: g.dataset.src, dst: g.dataset.dst,
        cps: Number(g.dataset.cps), rps: Number(g.dataset.rps),
        text: [...g.querySelectorAll("text")].map((t) => t.textContent),
      })),
      nodes: [...document.querySelectorAll("g.node")].map((g) => ({ id: g.dataset.id, kind: g.dataset.kind })),
      rows: [...document.querySelectorAll("#workloads tbody tr")].map((tr) => tr.dataset.id),
      status: document.getElementById("status").textContent,
    }));
    const edgeOk = expect.edges.every(([src, dst, needsRequests]) =>
      seen.edges.some((e) => e.src === src && e.dst === dst && (!needsRequests || e.rps > 0)));
    const waypointsOk = expect.waypoints.every((id) =>
      seen.nodes.some((n) => n.id === id && n.kind === "waypoint"));
    if (seen.ready && edgeOk && waypointsOk) { ok = true; break; }
    await page.waitForTimeout(500);
  }
  seen.pageErrors = errors;
  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok, seen }));
process.exit(ok ? 0 : 1);
