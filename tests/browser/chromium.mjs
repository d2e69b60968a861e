// The browser scripts' one Chromium launcher: headless Chromium through playwright-core, the
// system's binary ($CHROMIUM, else /usr/bin/chromium; scripts/setup.sh installs both), with the
// same flags for every script. tests/it/browser.rs runs the scripts.
import { chromium } from "playwright-core";

export const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
