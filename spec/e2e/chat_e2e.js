// The chat page of examples/chat-server.lua in a real browser: Debian's
// chromium, headless, driven by playwright-core. Two pages join one room;
// one types (the other sees the typing indicator), sends a message (both
// see it) and leaves (the other sees the leave). Prints one "ok" line a step
// and exits 0, or prints FAIL and exits 1.
//
//   node spec/e2e/chat_e2e.js PORT [ROOM]
//
// playwright-core and ws come from `npm install --prefix spec/e2e` (see
// luvd_ensure_e2e in scripts/deps.sh). Playwright starts chromium with
// --no-sandbox by default (its chromiumSandbox option is off), which a root
// user inside a container needs.
'use strict';
const { chromium } = require('playwright-core');

const port = Number(process.argv[2]);
const room = process.argv[3] || 'e2e-' + process.pid;
const base = `http://127.0.0.1:${port}/`;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 10000;

const deadline = setTimeout(() => {
  console.log('FAIL timed out');
  process.exit(1);
}, 60000);

async function open(browser, username) {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (e) => console.log(`page error (${username}): ${e.message}`));
  const res = await page.goto(base);
  if (!res.ok()) throw new Error(`GET / answered ${res.status()}`);
  await page.fill('#username', username);
  await page.fill('#room', room);
  await page.click('#join');
  await page.waitForSelector('#chat', { state: 'visible' });
  return page;
}

// Waits for a line of the message list with exactly this text.
function line(page, text) {
  return page.locator('#log li', { hasText: text }).first().waitFor();
}

async function main() {
  const browser = await chromium.launch({ executablePath });
  try {
    const alice = await open(browser, 'alice');
    console.log('ok alice joined');
    const bob = await open(browser, 'bob');
    await line(alice, 'bob joined the room');
    console.log('ok alice sees bob join');

    await bob.type('#text', 'hello from bob', { delay: 10 });
    await alice.locator('#typing', { hasText: 'bob is typing' }).waitFor();
    console.log('ok alice sees bob typing');
    if ((await bob.textContent('#typing')) !== '') throw new Error('bob sees his own typing');

    await bob.click('#send');
    await line(alice, 'bob: hello from bob');
    await line(bob, 'bob: hello from bob');
    console.log('ok both see the message');
    if ((await alice.textContent('#typing')) !== '') {
      throw new Error('the typing indicator stayed after the message');
    }

    await bob.click('#leave');
    await bob.waitForSelector('#login', { state: 'visible' });
    await line(alice, 'bob left the room');
    console.log('ok alice sees bob leave');

    const texts = await alice.locator('#log li').allTextContents();
    const want = ['bob joined the room', 'bob: hello from bob', 'bob left the room'];
    if (JSON.stringify(texts) !== JSON.stringify(want)) {
      throw new Error('alice\'s list: ' + JSON.stringify(texts));
    }
    console.log(`ok alice's list has ${texts.length} lines`);
  } finally {
    await browser.close();
  }
}

main().then(() => {
  clearTimeout(deadline);
}, (e) => {
  console.log('FAIL ' + (e && e.message || e));
  process.exit(1);
});
