// Loads sluice's status page in headless Chromium (playwright-core driving
// the system's chromium) and waits, in real time, for a CSS selector to
// appear; the page polls /api/v1/status every second by itself.
//
//   node status_page.js URL SELECTOR TIMEOUT_MS [--viewport WxH] [--screenshot FILE] [--check-layout]
//
// --check-layout fails (exit 1, the findings on stderr) if any two labels of
// the topology overlap, a label runs out of its box, a destination card that
// is ok comes before one that is not, or the problems banner is not in the
// first screenful.
// Prints the destination and pipeline cards' states as JSON (a pipeline's
// keyed `pipeline:NAME`) and exits 0 once the selector
// matches; exits 1 with what the page showed if it never does, or if the
// page scrolls sideways (it must fit a phone), or logged an error.
const { chromium } = require("playwright-core");

async function main() {
  const [url, selector, timeout, ...rest] = process.argv.slice(2);
  const opt = (name) => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : undefined; };
  const [width, height] = (opt("--viewport") || "1280x900").split("x").map(Number);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width, height } });
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await page.goto(url);
    const states = () => page.$$eval("[data-destination], [data-pipeline]", (cards) =>
      Object.fromEntries(cards.map((c) => [
        c.dataset.destination || `pipeline:${c.dataset.pipeline}`, c.dataset.state])));
    try {
      await page.waitForSelector(selector, { timeout: Number(timeout) });
    } catch (e) {
      console.error(`never saw ${selector}; the page showed ${JSON.stringify(await states())}`);
      console.error((await page.textContent("body")).slice(0, 2000));
      process.exitCode = 1;
      return;
    }
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) {
      console.error(`the page is ${overflow}px wider than a ${width}px screen`);
      process.exitCode = 1;
    }
    if (errors.length) {
      console.error(`the page logged errors: ${errors.join("; ")}`);
      process.exitCode = 1;
    }
    if (rest.includes("--check-layout")) {
      const report = await page.evaluate(() => {
        const texts = [...document.querySelectorAll("#graph text")]
          .map((t) => ({ text: t.textContent, r: t.getBoundingClientRect() }))
          .filter((t) => t.r.width > 0);
        const overlaps = [];
        for (let i = 0; i < texts.length; i++) {
          for (let j = i + 1; j < texts.length; j++) {
            const a = texts[i].r, b = texts[j].r;
            const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
            const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
            if (w > 0.5 && h > 0.5) overlaps.push(`${texts[i].text} / ${texts[j].text}`);
          }
        }
        const outside = [];
        document.querySelectorAll("#graph g.node").forEach((g) => {
          const box = g.querySelector("rect").getBoundingClientRect();
          g.querySelectorAll("text").forEach((t) => {
            const r = t.getBoundingClientRect();
            if (r.right > box.right + 0.5 || r.left < box.left - 0.5) outside.push(t.textContent);
          });
        });
        const states = [...document.querySelectorAll("[data-destination]")].map((c) => c.dataset.state);
        const firstOk = states.indexOf("ok");
        const lastBad = states.reduce((m, st, i) => (st !== "ok" ? i : m), -1);
        const banner = document.getElementById("problems").getBoundingClientRect();
        return {
          labels: texts.length,
          overlaps: overlaps.slice(0, 20),
          outside: outside.slice(0, 20),
          problemsFirst: firstOk === -1 || lastBad < firstOk,
          bannerVisible: banner.top >= 0 && banner.bottom <= window.innerHeight,
        };
      });
      if (report.overlaps.length || report.outside.length || !report.problemsFirst || !report.bannerVisible || report.labels < 10) {
        console.error(`layout: ${JSON.stringify(report)}`);
        process.exitCode = 1;
      }
    }
    const shot = opt("--screenshot");
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify(await states()));
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(String(e)); process.exitCode = 1; });
