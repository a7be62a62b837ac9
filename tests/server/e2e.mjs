// End to end: `straw serve` driven by clients nobody here wrote — the official `openai` npm package
// and headless Chromium (Debian's, through playwright-core) — plus raw sockets for bad input and a
// bounded load test.
//
//   node tests/server/e2e.mjs --straw build/bin/straw --model models/stories260K.gguf [--out DIR]
//
// Exit codes: 0 every check passed, 1 a check failed, 77 skipped (the npm packages are not
// installed: run `npm ci` in tests/server).
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const straw = args.straw, model = args.model, out = args.out || "/tmp/straw-e2e";
if (!straw || !model) { console.error("usage: e2e.mjs --straw BIN --model FILE [--out DIR]"); process.exit(2); }
let OpenAI, chromium;
try {
  OpenAI = (await import("openai")).default;
  chromium = (await import("playwright-core")).chromium;
} catch {
  console.log("SKIP: the npm packages are not installed (run `npm ci` in tests/server)");
  process.exit(77);
}
mkdirSync(out, { recursive: true });

let failures = 0;
const check = (ok, what, detail = "") => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${!ok && detail ? ": " + detail : ""}`);
  if (!ok) failures++;
};
const sleep = ms => new Promise(r => setTimeout(r, ms));
// Runs one group of checks; an exception fails the group and the run goes on.
async function section(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(false, name, e.stack || String(e));
  }
}

// ---- the server -------------------------------------------------------------------------------
const KEY = "e2e-key";
function start_server(extra = []) {
  const proc = spawn(straw, ["serve", "-m", model, "--port", "0", "-t", "2", "--ctx", "512",
                             "--parallel", "4", "--api-key", KEY, "--max-body", "64KiB", "--timeout", "2", ...extra],
                     { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const port = new Promise((resolve, reject) => {
    proc.stderr.on("data", d => {
      log += d;
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    });
    proc.on("exit", code => reject(new Error(`straw serve exited with ${code}:\n${log}`)));
  });
  return { proc, port, log: () => log };
}
const server = start_server();
const port = await server.port;
const base = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  const r = await fetch(`${base}/health`).catch(() => null);
  if (r && r.status === 200) break;
  if (i > 600) throw new Error("the server did not become ready");
  await sleep(50);
}
const client = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 0, timeout: 120000 });
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.proc.pid}/status`, "utf8"))[1]);

// ---- chat and completions, streamed and not ---------------------------------------------------
const prompt = "Once upon a time";
{
  const r = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: prompt }],
                                                   max_tokens: 24, temperature: 0 });
  check(r.object === "chat.completion" && r.choices[0].message.role === "assistant" &&
        r.choices[0].message.content.length > 0, "chat completion", JSON.stringify(r));
  check(r.choices[0].finish_reason === "length" && r.usage.completion_tokens === 24 &&
        r.usage.total_tokens === r.usage.prompt_tokens + 24, "chat usage and finish_reason", JSON.stringify(r.usage));
  const stream = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: prompt }],
                                                        max_tokens: 24, temperature: 0, stream: true,
                                                        stream_options: { include_usage: true } });
  let text = "", role = null, finish = null, usage = null;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    if (ch.delta.role) role = ch.delta.role;
    text += ch.delta.content || "";
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  check(role === "assistant" && finish === "length" && usage && usage.completion_tokens === 24,
        "chat stream: role first, finish_reason last, usage chunk");
  check(text === r.choices[0].message.content, "chat stream equals the non-streamed reply", `${text} | ${r.choices[0].message.content}`);
}
{
  const r = await client.completions.create({ model: "x", prompt, max_tokens: 32, temperature: 0 });
  const cli = execFileSync(straw, ["run", "-m", model, "-p", prompt, "-n", "32", "--temp", "0", "-t", "2"],
                           { stdio: ["ignore", "pipe", "ignore"] }).toString().replace(/\n$/, "");
  check(r.choices[0].text === cli, "greedy completion equals `straw run --temp 0`", `${JSON.stringify(r.choices[0].text)} vs ${JSON.stringify(cli)}`);
  const s = await client.completions.create({ model: "x", prompt, max_tokens: 32, temperature: 0, stream: true });
  let text = "";
  for await (const c of s) text += c.choices[0]?.text || "";
  check(text === cli, "streamed completion equals `straw run --temp 0`");
  const echo = await client.completions.create({ model: "x", prompt, max_tokens: 4, temperature: 0, echo: true, logprobs: 2 });
  check(echo.choices[0].text.startsWith(prompt) && echo.choices[0].logprobs.tokens.length === 4 &&
        Object.keys(echo.choices[0].logprobs.top_logprobs[0]).length >= 1, "completion echo and logprobs");
  // Stop sequences: cut at the first occurrence, not included, finish_reason "stop".
  const word = cli.split(" ").filter(w => w.length > 2)[2];
  const st = await client.completions.create({ model: "x", prompt, max_tokens: 32, temperature: 0, stop: [word, "zzzz"] });
  check(st.choices[0].text === cli.slice(0, cli.indexOf(word)) && st.choices[0].finish_reason === "stop",
        `stop sequence "${word}"`, JSON.stringify(st.choices[0]));
}
{
  const ask = seed => client.chat.completions.create({ model: "x", messages: [{ role: "user", content: prompt }],
                                                       max_tokens: 40, temperature: 1, seed });
  const [a, b, c] = await Promise.all([ask(1234), ask(1234), ask(99)]);
  check(a.choices[0].message.content === b.choices[0].message.content, "same seed, same text");
  check(a.choices[0].message.content !== c.choices[0].message.content, "another seed, another text");
  const lp = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: prompt }],
                                                   max_tokens: 5, logprobs: true, top_logprobs: 3 });
  const content = lp.choices[0].logprobs?.content || [];
  check(content.length === 5 && content.every(t => t.logprob <= 0 && t.top_logprobs.length === 3 && Array.isArray(t.bytes)),
        "chat logprobs with top_logprobs");
}

// ---- json_schema: constrained decoding always gives JSON that validates ----------------------
await section("json_schema: constrained decoding always gives JSON that validates", async () => {
  const schema = { type: "object", additionalProperties: false, required: ["name", "age", "pets"],
                   properties: { name: { type: "string", maxLength: 12 }, age: { type: "integer" },
                                 pets: { type: "array", maxItems: 3, items: { enum: ["cat", "dog", "fish"] } } } };
  let valid = 0;
  for (const seed of [1, 2, 3, 4]) {
    const r = await client.chat.completions.create({
      model: "x", messages: [{ role: "user", content: "Tell me about a girl and her pets." }], max_tokens: 480,
      temperature: 1, seed, response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } } });
    let v = null;
    try { v = JSON.parse(r.choices[0].message.content); } catch {}
    const ok = v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).sort().join() === "age,name,pets" &&
               typeof v.name === "string" && v.name.length <= 12 && Number.isInteger(v.age) &&
               Array.isArray(v.pets) && v.pets.length <= 3 && v.pets.every(p => ["cat", "dog", "fish"].includes(p));
    if (ok && r.choices[0].finish_reason === "stop") valid++;
    else console.log("  json_schema output:", JSON.stringify(r.choices[0]));
  }
  check(valid === 4, "json_schema output parses and validates (4 seeds)");
  // json_object allows objects of any length, and this tiny story model keeps adding members until
  // max_tokens (measured: it never closed one in 400 tokens at any temperature tried), so here the
  // check is that the reply is an object as far as it goes and ends only by length; complete
  // objects are covered by the random-walk tests of tests/server_json_constraint_test.cpp.
  const j = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: prompt }],
                                                  max_tokens: 60, seed: 5, response_format: { type: "json_object" } });
  const c = j.choices[0];
  check(c.message.content.trimStart().startsWith("{") &&
        (c.finish_reason === "length" || typeof JSON.parse(c.message.content) === "object"),
        "json_object output is a JSON object", JSON.stringify(c));
});

// ---- 4 concurrent streams equal the same requests one at a time --------------------------------
await section("4 concurrent streams equal the same requests one at a time", async () => {
  const prompts = ["Once upon a time", "The little dog", "One day, Lily went", "Tom and Sue were"];
  const run = async p => {
    const s = await client.completions.create({ model: "x", prompt: p, max_tokens: 48, temperature: 0, stream: true });
    let t = "";
    for await (const c of s) t += c.choices[0]?.text || "";
    return t;
  };
  const alone = [];
  for (const p of prompts) alone.push(await run(p));
  const together = await Promise.all(prompts.map(run));
  check(together.every((t, i) => t === alone[i]), "4 concurrent greedy streams equal one at a time",
        JSON.stringify({ alone, together }));
});

// ---- bad input over raw sockets; then /health answers and memory is where it was --------------
function raw(bytes, wait = 3000) {
  return new Promise(resolve => {
    const s = net.connect(port, "127.0.0.1");
    let data = "";
    s.on("data", d => { data += d; });
    s.on("error", () => resolve(data));
    s.on("close", () => resolve(data));
    s.setTimeout(wait, () => { s.destroy(); resolve(data); });
    s.write(bytes);
  });
}
const http = (method, p, body, auth = true) =>
  `${method} ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${auth ? `Authorization: Bearer ${KEY}\r\n` : ""}` +
  `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const status = r => Number((/^HTTP\/1\.1 (\d+)/.exec(r) || [])[1] || 0);
const errorShape = r => { try { const j = JSON.parse(r.slice(r.indexOf("\r\n\r\n") + 4)); return j.error && j.error.message && j.error.type && j.error.code; } catch { return false; } };
async function bad_round() {
  const msgs = `"messages":[{"role":"user","content":"hi"}]`;
  const cases = [
    ["malformed JSON", http("POST", "/v1/chat/completions", "{oops"), 400],
    ["wrong type", http("POST", "/v1/chat/completions", `{${msgs},"temperature":"x"}`), 400],
    ["out of range", http("POST", "/v1/chat/completions", `{${msgs},"top_p":9}`), 400],
    ["negative max_tokens", http("POST", "/v1/chat/completions", `{${msgs},"max_tokens":-7}`), 400],
    ["invalid UTF-8", Buffer.concat([Buffer.from(http("POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"ab"}]}`).slice(0, -4)), Buffer.from([0xff, 0xfe]), Buffer.from(`"}]}`)]), 400],
    ["empty messages", http("POST", "/v1/chat/completions", `{"messages":[]}`), 400],
    ["prompt longer than the context", http("POST", "/v1/completions", `{"prompt":"${"word ".repeat(600)}"}`), 400],
    ["body over --max-body", http("POST", "/v1/completions", `{"prompt":"${"x".repeat(100000)}"}`), 413],
    ["missing API key", http("POST", "/v1/completions", `{"prompt":"x"}`, false), 401],
    ["unknown path", http("GET", "/v2/whatever", ""), 404],
  ];
  for (const [what, bytes, want] of cases) {
    const r = await raw(bytes);
    check(status(r) === want && errorShape(r), `bad input: ${what} -> ${want}`, r.slice(0, 200));
  }
  const truncated = await raw(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 300\r\n\r\n{"prompt":`, 30000);
  check(status(truncated) !== 200, "bad input: a body that never arrives times out", truncated.slice(0, 80));
}
await bad_round();
const rss_before = rss();
for (let i = 0; i < 3; i++) await bad_round();
const rss_after = rss();
const health = await fetch(`${base}/health`);
check(health.status === 200 && (await health.json()).status === "ok", "/health answers after the bad input");
check(rss_after - rss_before < 32 * 1024, `server RSS steady over bad input (${rss_before} -> ${rss_after} KiB)`);

// ---- load: 16 clients x 20 requests, mixed streaming ------------------------------------------
await section("load: 16 clients x 20 requests, mixed streaming", async () => {
  let errors = 0, incomplete = 0, done = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: 16 }, async (_, c) => {
    for (let i = 0; i < 20; i++) {
      try {
        const max_tokens = 8 + ((c * 7 + i * 3) % 24);
        if ((c + i) % 2) {
          const s = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: `Story ${c} ${i}` }],
                                                           max_tokens, stream: true, seed: c * 100 + i });
          let finish = null;
          for await (const ch of s) if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
          if (!finish) incomplete++;
        } else {
          const r = await client.completions.create({ model: "x", prompt: `Story ${c} ${i}`, max_tokens, seed: i });
          if (!r.choices[0].finish_reason || r.usage.completion_tokens > max_tokens) incomplete++;
        }
        done++;
      } catch (e) {
        errors++;
        console.log("  load error:", e.message);
      }
    }
  }));
  check(errors === 0 && incomplete === 0 && done === 320,
        `load: 16 clients x 20 requests in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${errors} errors, ${incomplete} incomplete`);
});

// ---- a client that goes away frees its slot --------------------------------------------------
await section("a client that goes away frees its slot", async () => {
  const ctrl = new AbortController();
  const s = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: prompt }],
                                                   max_tokens: 100000, stream: true }, { signal: ctrl.signal });
  let n = 0;
  try { for await (const _ of s) if (++n === 5) ctrl.abort(); } catch {}
  await sleep(300);
  const m = await (await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } })).text();
  check(/straw_slots_busy 0\b/.test(m) && /straw_generations_cancelled_total [1-9]/.test(m),
        "a disconnected stream frees its slot", m.split("\n").filter(l => /slots_busy|cancelled/.test(l)).join(" "));
});

// ---- the chat page in headless Chromium ------------------------------------------------------
const chromium_path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(p => existsSync(p));
if (!chromium_path) {
  console.log("skip: the chat page test needs Debian's chromium (apt install chromium)");
} else {
  const browser = await chromium.launch({ executablePath: chromium_path, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run"] });
  try {
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    await page.fill("#key", KEY);
    await page.dispatchEvent("#key", "change");
    await page.fill("#input", "Once upon a time");
    await page.click("#send");
    await page.waitForFunction(() => {
      const m = document.querySelectorAll(".msg.assistant");
      return m.length && m[m.length - 1].textContent.length > 20;
    }, null, { timeout: 30000 });
    await page.waitForFunction(() => !document.getElementById("send").disabled, null, { timeout: 60000 });
    const reply = await page.textContent(".msg.assistant");
    const speed = await page.textContent("#speed");
    await page.screenshot({ path: path.join(out, "chat-page.png") });
    check(reply.length > 20 && /tokens\/s/.test(speed), `chat page streamed a reply (${speed}); screenshot ${path.join(out, "chat-page.png")}`);
  } finally {
    await browser.close();
  }
}

// ---- SIGTERM: stop accepting, finish, exit 0 --------------------------------------------------
const exit = new Promise(r => server.proc.on("exit", (code, sig) => r({ code, sig })));
server.proc.kill("SIGTERM");
const { code } = await exit;
check(code === 0, `SIGTERM: the server exits with 0 (got ${code})`);

console.log(failures ? `${failures} check(s) failed` : "all checks passed");
process.exit(failures ? 1 : 0);
